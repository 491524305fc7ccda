#!/usr/bin/env python3
"""Proves that a CUDA provider reduced by bench/gpu/fatbin is the original
for one GPU architecture, with a parser of its own (not fatbin's):

  check-provider.py [-arch 90] ORIGINAL REDUCED

1. Same size, and every byte outside .nv_fatbin identical: the ELF header,
   program and section headers, code, data, relocations and the fat binary
   wrappers are the original's, so the file is as valid an ELF as it was.
2. The same containers at the same offsets; each one that held sm_ARCH
   entries holds exactly those, byte for byte and in order, with its size
   cut to match; each one that held none is unchanged.
3. Whatever the containers no longer use is zero.
4. readelf (binutils), when present, reads both files alike and warns of
   nothing.

Prints the sha256 of the sm_ARCH images of each file (equal), and exits 1
at the first difference.
"""
import hashlib
import re
import shutil
import struct
import subprocess
import sys

FATBIN_MAGIC = 0xBA55ED50


def fail(msg):
    print("check-provider: FAIL: " + msg)
    sys.exit(1)


def section(data, name):
    """Returns (offset, size) of the named section of an ELF64 LE file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        fail("not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shoff + shnum * shentsize > len(data):
        fail("section headers past the end of the file")

    def header(i):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)

    stroff = header(shstrndx)[4]
    for i in range(shnum):
        h = header(i)
        end = data.index(b"\0", stroff + h[0])
        if data[stroff + h[0]:end].decode() == name:
            if h[4] + h[5] > len(data):
                fail(name + " ends past the file")
            return h[4], h[5]
    fail("no " + name + " section")


def containers(sec):
    """Yields (offset, size, [(kind, arch, entry bytes)]) per container,
    skipping zeros between containers."""
    nonzero = re.compile(rb"[^\x00]")
    p = 0
    while p < len(sec):
        if sec[p] == 0:
            m = nonzero.search(sec, p)
            if not m:
                return
            p = m.start()
        magic, _, hsize, fat = struct.unpack_from("<IHHQ", sec, p)
        if magic != FATBIN_MAGIC or hsize != 16 or p + 16 + fat > len(sec):
            fail("offset %#x of .nv_fatbin: not a fat binary container" % p)
        end, q, entries = p + 16 + fat, p + 16, []
        while q < end:
            kind, _, ehs, payload = struct.unpack_from("<HHIQ", sec, q)
            arch, = struct.unpack_from("<I", sec, q + 28)
            if ehs < 64 or q + ehs + payload > end:
                fail("offset %#x of .nv_fatbin: entry crosses its container's end" % q)
            entries.append((kind, arch, bytes(sec[q:q + ehs + payload]), ehs))
            q += ehs + payload
        yield p, 16 + fat, entries
        p = end


def readelf(path):
    r = subprocess.run(["readelf", "-W", "-h", "-l", "-S", "-d", "--dyn-syms", path],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout.replace(path, "FILE"), r.stderr.strip()


def main(argv):
    arch = 90
    if len(argv) > 1 and argv[0] == "-arch":
        arch, argv = int(argv[1]), argv[2:]
    if len(argv) != 2:
        print(__doc__)
        return 2
    orig, red = (open(p, "rb").read() for p in argv)
    if len(orig) != len(red):
        fail("sizes differ: %d and %d bytes" % (len(orig), len(red)))
    off, size = section(orig, ".nv_fatbin")
    if section(red, ".nv_fatbin") != (off, size):
        fail(".nv_fatbin moved")
    outside = [hashlib.sha256(d[:off] + d[off + size:]).hexdigest() for d in (orig, red)]
    if outside[0] != outside[1]:
        fail("bytes outside .nv_fatbin differ")
    print("outside .nv_fatbin (%d of %d bytes): identical, sha256 %s" % (len(orig) - size, len(orig), outside[0]))

    osec, rsec = memoryview(orig)[off:off + size], memoryview(red)[off:off + size]
    ocs, rcs = list(containers(osec)), list(containers(rsec))
    if [c[0] for c in ocs] != [c[0] for c in rcs]:
        fail("containers moved: %d in the original, %d reduced" % (len(ocs), len(rcs)))
    oh, rh = hashlib.sha256(), hashlib.sha256()
    kept = whole = used = 0
    other = set()
    for (o, osize, oents), (_, rsize, rents) in zip(ocs, rcs):
        want = [e for e in oents if e[1] == arch]
        if not want:
            want = oents  # left whole: it has no sm_ARCH code to keep
            whole += 1
            other.update("sm_%d" % e[1] for e in oents)
        if [e[2] for e in rents] != [e[2] for e in want]:
            fail("container at %#x: its entries are not the original's sm_%d ones" % (o, arch))
        for e in oents:
            if e[1] == arch:
                oh.update(e[2])
                kept += 1
                if bytes(e[2][e[3]:e[3] + 4]) not in (b"\x28\xb5\x2f\xfd", b"\x7fELF"):
                    fail("container at %#x: an sm_%d image is neither a zstd frame nor an ELF" % (o, arch))
        for e in rents:
            if e[1] == arch:
                rh.update(e[2])
        if any(rsec[o + rsize:o + osize]):
            fail("container at %#x: bytes it no longer uses are not zero" % o)
        used += rsize
    if oh.digest() != rh.digest() or kept == 0:
        fail("sm_%d images differ" % arch)
    print("sm_%d images: %d entries, sha256 %s in the original, %s reduced: identical" % (arch, kept, oh.hexdigest(), rh.hexdigest()))
    print("containers: %d at the same offsets, %d left whole (no sm_%d code; they hold %s); %d of %d .nv_fatbin bytes in use, the rest zero"
          % (len(ocs), whole, arch, ", ".join(sorted(other)) or "nothing", used, size))

    if shutil.which("readelf"):
        a, b = readelf(argv[0]), readelf(argv[1])
        if a[0] != 0 or b[0] != 0 or b[2]:
            fail("readelf: exit %d, %s" % (b[0], b[2] or "no message"))
        if a[1] != b[1]:
            fail("readelf reads the headers differently")
        print("readelf -h -l -S -d --dyn-syms: exit 0, no warning, output identical to the original's (%d lines)" % b[1].count("\n"))
    else:
        print("readelf: not installed (apt-get install binutils); checks 1-3 stand without it")
    print("check-provider: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
