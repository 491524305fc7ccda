#!/usr/bin/env python3
"""The helpers of bench/gpu/visit.sh, in python3's standard library only
(the GPU host has python3, maybe no curl, no xz, no Go), and PyTorch for the
ceiling. Every figure a step measures is appended to DETAILS/records.jsonl;
`summary` turns them into the one table of summary.md.

  visit.py unpack PACK DEST            ort.tar.xz and bin.tar.xz into DEST, checked
  visit.py cudalibs DETAILS            CUDA library folders (printed, ':'-joined) and versions
  visit.py providers DETAILS NAME EXPECT [--strict] PROFILE...
  visit.py bench DETAILS FILE          a gpu.test BenchmarkRun output
  visit.py torch DETAILS               the PyTorch ceiling and the host-to-device copy
  visit.py wait URL SECONDS [PID]      until URL answers 200, at most SECONDS
  visit.py fetch URL FILE
  visit.py sweep DETAILS NAME CSV      a loadtest sweep's csv
  visit.py opened DETAILS NAME LOG     inferd's "model opened" line: open and warm-up times
  visit.py record DETAILS GROUP WHAT VALUE UNIT [NOTE]
  visit.py meta DETAILS KEY=VALUE...    facts for summary.md's header
  visit.py relay ORTX                  the fallback: join and unpack the relayed pieces
  visit.py has FILE STRING             exit 0 when FILE holds STRING (a knob a binary reads)
  visit.py summary DETAILS OUT         summary.md
  visit.py archive DETAILS OUT         DETAILS as a .tar.gz
"""
import glob
import hashlib
import json
import os
import re
import sys
import tarfile
import time
import urllib.request

# What one fp32 batch of 64 ResNet50 rows (3x224x224) weighs: the copy every
# such batch makes to the device.
BATCH64_BYTES = 64 * 3 * 224 * 224 * 4

# The CUDA libraries the provider needs (NEEDED, or opened at run time).
CUDA_LIBS = ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libcudnn.so.9"]
OPTIONAL_LIBS = ["libcufft.so.12"]


def record(details, group, what, value, unit="", note="", key=""):
    r = {"group": group, "what": what, "value": value, "unit": unit, "note": note, "key": key or group + "/" + what}
    with open(os.path.join(details, "records.jsonl"), "a") as f:
        f.write(json.dumps(r) + "\n")


def records(details):
    p = os.path.join(details, "records.jsonl")
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return [json.loads(line) for line in f if line.strip()]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def extract(tar, dest):
    if sys.version_info >= (3, 12):
        tar.extractall(dest, filter="data")
    else:
        tar.extractall(dest)


def cmd_unpack(pack, dest):
    t0 = time.time()
    sums = {}
    manifest = os.path.join(pack, "MANIFEST")
    if os.path.exists(manifest):
        for line in open(manifest):
            m = re.match(r"^([0-9a-f]{64})  (\S+)$", line.strip())
            if m:
                sums[m.group(2)] = m.group(1)
    for name in ("ort.tar.xz", "bin.tar.xz"):
        p = os.path.join(pack, name)
        if not os.path.exists(p):
            if name == "bin.tar.xz":
                print("unpack: %s missing: run bench/gpu/prepare.sh and carry .gpu/pack" % p)
                return 1
            continue
        if name in sums and sha256(p) != sums[name]:
            print("unpack: %s does not match its sha256 in MANIFEST: the transfer is incomplete" % p)
            return 1
        with tarfile.open(p, "r:xz") as tar:
            extract(tar, dest)
        print("unpack: %s (%.1f MiB) in %.1fs" % (name, os.path.getsize(p) / 2**20, time.time() - t0))
    ort = os.path.join(dest, "ort")
    if os.path.isdir(ort):
        for line in open(os.path.join(ort, "SHA256SUMS")):
            want, name = line.split()
            if sha256(os.path.join(ort, name)) != want:
                print("unpack: %s/%s: sha256 mismatch" % (ort, name))
                return 1
        print("unpack: ort/SHA256SUMS ok")
    return 0


def cmd_relay(ortx):
    """The fallback relay: joins the pieces of ort.tar.xz that earlier calls
    left in ORTX (stage-ort-cuda.sh's .gpu/c1..c4) and unpacks ORTX/ort."""
    pieces = sorted(glob.glob(os.path.join(ortx, "ort.tar.xz.*")))
    if not pieces:
        print("relay: no ort.tar.xz.* in %s: carry .gpu/c1, c2, c3 in the calls before, .gpu/c4 in this one" % ortx)
        return 1
    joined = os.path.join(ortx, "ort.tar.xz")
    with open(joined, "wb") as out:
        for p in pieces:
            with open(p, "rb") as f:
                out.write(f.read())
    with tarfile.open(joined, "r:xz") as tar:
        extract(tar, ortx)
    for line in open(os.path.join(ortx, "ort", "SHA256SUMS")):
        want, name = line.split()
        if sha256(os.path.join(ortx, "ort", name)) != want:
            print("relay: %s: sha256 mismatch: a piece is missing or cut" % name)
            return 1
    print("relay: %d pieces joined, ort/SHA256SUMS ok" % len(pieces))
    return 0


def site_dirs():
    dirs = []
    try:
        import site
        dirs += site.getsitepackages() + [site.getusersitepackages()]
    except Exception:
        pass
    dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    seen, out = set(), []
    for d in dirs:
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


def cuda_dirs():
    """Folders that hold the CUDA libraries, in the known layouts only (pip
    wheels, PyTorch's own lib folder, /usr/local/cuda*): never a walk of /."""
    cands = []
    for sp in site_dirs():
        cands += [os.path.join(sp, "nvidia", "cu13", "lib"), os.path.join(sp, "nvidia", "cudnn", "lib")]
        cands += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "lib")))
        cands.append(os.path.join(sp, "torch", "lib"))
    for c in sorted(glob.glob("/usr/local/cuda*"), reverse=True):
        cands += [os.path.join(c, "lib64"), os.path.join(c, "targets", "x86_64-linux", "lib")]
    cands += ["/usr/lib/x86_64-linux-gnu", "/usr/lib64"]
    found, dirs = {}, []
    for d in cands:
        if not os.path.isdir(d):
            continue
        have = [lib for lib in CUDA_LIBS + OPTIONAL_LIBS if os.path.exists(os.path.join(d, lib))]
        new = [lib for lib in have if lib not in found]
        if new and d not in dirs:
            dirs.append(d)
        for lib in new:
            found[lib] = os.path.join(d, lib)
    return dirs, found


def lib_version(path, fn, fmt):
    import ctypes
    try:
        lib = ctypes.CDLL(path)
        if fn == "cudnnGetVersion":
            lib.cudnnGetVersion.restype = ctypes.c_size_t
            v = lib.cudnnGetVersion()
            return "%d.%d.%d" % (v // 10000, v // 100 % 100, v % 100) if v >= 90000 else str(v)
        v = ctypes.c_int(0)
        if getattr(lib, fn)(ctypes.byref(v)) != 0:
            return "error"
        return fmt(v.value)
    except Exception as e:
        return "unavailable (%s)" % str(e).split(":")[-1].strip()


def cmd_cudalibs(details):
    dirs, found = cuda_dirs()
    missing = [lib for lib in CUDA_LIBS if lib not in found]
    glibc = os.confstr("CS_GNU_LIBC_VERSION").replace("glibc ", "") if hasattr(os, "confstr") else "unknown"
    cuver = lambda v: "%d.%d" % (v // 1000, v % 1000 // 10)
    info = {
        "dirs": dirs, "found": found, "missing": missing, "glibc": glibc,
        "cudnn": lib_version(found["libcudnn.so.9"], "cudnnGetVersion", None) if "libcudnn.so.9" in found else "not found",
        "cudart": lib_version(found["libcudart.so.13"], "cudaRuntimeGetVersion", cuver) if "libcudart.so.13" in found else "not found",
        "driver_cuda": lib_version("libcuda.so.1", "cuDriverGetVersion", cuver),
        "python": sys.version.split()[0],
    }
    with open(os.path.join(details, "cuda.json"), "w") as f:
        json.dump(info, f, indent=1)
    for k in ("glibc", "cudnn", "cudart", "driver_cuda"):
        record(details, "host", k, info[k])
    record(details, "host", "CUDA library folders", len(dirs), "", " ".join(dirs) or "none found")
    if missing:
        record(details, "host", "CUDA libraries missing", len(missing), "", " ".join(missing))
    sys.stderr.write("cudalibs: folders %s\ncudalibs: missing %s; glibc %s, cuDNN %s, cudart %s, driver CUDA %s\n" % (
        " ".join(dirs) or "none", " ".join(missing) or "none", info["glibc"], info["cudnn"], info["cudart"], info["driver_cuda"]))
    print(":".join(dirs))
    return 0


def cmd_providers(details, name, expect, strict, files):
    counts, ops_off = {}, {}
    for f in files:
        with open(f) as fh:
            events = json.load(fh)
        for e in events:
            a = e.get("args") or {}
            if e.get("cat") != "Node" or "provider" not in a:
                continue
            p = a["provider"]
            counts[p] = counts.get(p, 0) + 1
            if p != expect:
                ops_off[a.get("op_name", "?")] = ops_off.get(a.get("op_name", "?"), 0) + 1
    total = sum(counts.values())
    on = counts.get(expect, 0)
    detail = ", ".join("%s %d" % kv for kv in sorted(counts.items()))
    print("providers %s: %d node runs in %d profile(s): %s" % (name, total, len(files), detail or "none"))
    if ops_off:
        print("providers %s: not on %s: %s" % (name, expect, ", ".join("%s x%d" % kv for kv in sorted(ops_off.items()))))
    record(details, "providers", name, "%d of %d" % (on, total), "node runs on " + expect,
           ("others: " + ", ".join("%s x%d" % kv for kv in sorted(ops_off.items()))) if ops_off else "")
    if on == 0:
        print("providers %s: FAIL: no node ran on %s" % (name, expect))
        return 1
    heavy = sorted(op for op in ops_off if re.search(r"Conv|Gemm|MatMul", op))
    if strict and heavy:
        print("providers %s: FAIL: %s ran off %s" % (name, ", ".join(heavy), expect))
        return 1
    if ops_off:
        print("providers %s: WARNING: %d node runs off %s (no convolution or matrix product among them)" % (name, total - on, expect))
    return 0


BENCH = re.compile(r"^BenchmarkRun\S*/(?P<model>[^/\s]+)/(?P<dev>[^/\s]+)/batch=(?P<batch>\d+)(?:-\d+)?\s+(?P<n>\d+)\s+(?P<ns>[\d.]+) ns/op.*?(?P<ips>[\d.]+) images/s")


def cmd_bench(details, path, label=""):
    n = 0
    for line in open(path):
        m = BENCH.match(line.strip())
        if not m:
            continue
        model = label or m.group("model")
        b = int(m.group("batch"))
        ips = float(m.group("ips"))
        record(details, "raw ORT " + m.group("dev"), "%s batch %d" % (model, b), round(ips, 1), "images/s",
               "%.2f ms per batch, %s runs" % (float(m.group("ns")) / 1e6, m.group("n")), key="raw/%s/%d" % (model, b))
        n += 1
    print("bench: %d figures from %s" % (n, path))
    return 0 if n else 1


def cmd_torch(details):
    t0 = time.time()
    try:
        import torch
        import torchvision
    except ImportError as e:
        record(details, "torch ceiling", "PyTorch", None, "", "not importable by %s: %s" % (sys.executable, e))
        print("torch: not importable: %s" % e)
        return 1
    dev = torch.device("cuda:0")
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    res = {"torch": torch.__version__, "torchvision": torchvision.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "gpu": torch.cuda.get_device_name(0)}
    print("torch: %s" % res)
    record(details, "torch", "versions", "%s / %s / CUDA %s / cuDNN %s" % (res["torch"], res["torchvision"], res["cuda"], res["cudnn"]))
    model = torchvision.models.resnet50(weights=None).eval().to(dev, memory_format=torch.channels_last).half()
    for bs in (64, 128, 256):
        try:
            x = torch.randn(bs, 3, 224, 224, device=dev).half().contiguous(memory_format=torch.channels_last)
            how = "CUDA graph"
            with torch.no_grad():
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        model(x)  # cudnn.benchmark picks its kernels here
                torch.cuda.current_stream().wait_stream(s)
                try:
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        model(x)
                    step = g.replay
                except Exception as e:
                    how = "eager (graph capture failed: %s)" % str(e).splitlines()[0]
                    step = lambda: model(x)
                step()
                torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(3):
                    step()
                torch.cuda.synchronize()
                n = max(5, int(1.0 / max((time.perf_counter() - t) / 3, 1e-4)))
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(n):
                    step()
                end.record()
                end.synchronize()
                ms = start.elapsed_time(end) / n
            record(details, "torch ceiling", "resnet50 fp16 NHWC batch %d" % bs, round(bs * 1000 / ms, 1), "images/s",
                   "%.2f ms per batch, %s, %d runs" % (ms, how, n), key="torch/%d" % bs)
            print("torch: batch %d: %.1f images/s (%.2f ms, %s)" % (bs, bs * 1000 / ms, ms, how))
            del x
            torch.cuda.empty_cache()
        except Exception as e:
            record(details, "torch ceiling", "resnet50 fp16 NHWC batch %d" % bs, None, "images/s", "failed: %s" % str(e).splitlines()[0])
            print("torch: batch %d failed: %s" % (bs, e))
    # The copy a batch of 64 fp32 rows makes, from pinned and from pageable
    # (touched: random bytes, not the zero page) memory.
    dst = torch.empty(BATCH64_BYTES, dtype=torch.uint8, device=dev)
    srcs = {"pinned": torch.randint(0, 256, (BATCH64_BYTES,), dtype=torch.uint8).pin_memory(),
            "pageable": torch.randint(0, 256, (BATCH64_BYTES,), dtype=torch.uint8)}
    for name, src in srcs.items():
        for _ in range(3):
            dst.copy_(src, non_blocking=True)
        torch.cuda.synchronize()
        times = []
        for _ in range(20):
            t = time.perf_counter()
            dst.copy_(src, non_blocking=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        ms = sorted(times)[len(times) // 2] * 1000
        record(details, "host to device", "%.1f MB from %s memory" % (BATCH64_BYTES / 1e6, name), round(ms, 3), "ms",
               "%.1f GB/s (median of 20)" % (BATCH64_BYTES / ms / 1e6), key="h2d/" + name)
        print("torch: H2D %s: %.3f ms, %.1f GB/s" % (name, ms, BATCH64_BYTES / ms / 1e6))
    print("torch: done in %.1fs" % (time.time() - t0))
    return 0


def cmd_wait(url, secs, pid=None):
    deadline = time.time() + min(float(secs), 90)
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return 0
        except Exception:
            pass
        if pid:
            try:
                os.kill(int(pid), 0)
            except OSError:
                print("wait: process %s exited" % pid)
                return 1
        time.sleep(0.25)
    print("wait: %s not ready after %ss" % (url, secs))
    return 1


def cmd_fetch(url, path):
    try:
        with urllib.request.urlopen(url, timeout=10) as r, open(path, "wb") as f:
            f.write(r.read())
        return 0
    except Exception as e:
        print("fetch %s: %s" % (url, e))
        return 1


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def cmd_sweep(details, name, path):
    import csv
    n = 0
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get("mode", "").startswith(("closed", "open"))]
    for r in rows:
        c = r["concurrency"]
        thr = num(r["throughput"])
        note = "p50 %s ms, p99 %s ms, success %s; server: mean batch %s, queue mean %s ms, compute mean %s ms (p99 %s)" % (
            r["p50_ms"], r["p99_ms"], r["success"], r.get("server_mean_batch") or "-", r.get("server_queue_mean_ms") or "-",
            r.get("server_compute_mean_ms") or "-", r.get("server_compute_p99_ms") or "-")
        if r.get("errors"):
            note += "; errors: " + r["errors"][:120]
        record(details, "inferd", "%s c=%s" % (name, c), round(thr, 1) if thr is not None else None, "requests/s", note,
               key="inferd/%s/%s" % (name, c))
        if num(r.get("server_mean_batch")):
            record(details, "inferd", "%s c=%s server mean batch" % (name, c), num(r["server_mean_batch"]), "rows",
                   "", key="inferdbatch/%s/%s" % (name, c))
        mb, cm = num(r.get("server_mean_batch")), num(r.get("server_compute_mean_ms"))
        if mb and cm:
            record(details, "inferd", "%s c=%s server compute" % (name, c), round(mb * 1000 / cm, 1), "images/s",
                   "mean batch %.1f in %.2f ms" % (mb, cm), key="inferdcompute/%s/%s" % (name, c))
        n += 1
    print("sweep %s: %d points" % (name, n))
    return 0 if n else 1


def cmd_opened(details, name, path):
    for line in open(path):
        if 'msg="model opened"' in line:
            o = re.search(r"\bopen=(\S+)", line)
            w = re.search(r"\bwarmup=(\S+)", line)
            b = re.search(r'\bbuckets="([^"]*)"', line)
            record(details, "inferd open", name, o.group(1) if o else None, "", "warm-up %s, buckets %s" % (
                w.group(1) if w else "?", b.group(1) if b else "?"), key="opened/" + name)
            return 0
    record(details, "inferd open", name, None, "", "no 'model opened' line in the log")
    return 1


def cmd_has(path, s):
    with open(path, "rb") as f:
        return 0 if s.encode() in f.read() else 1


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%.3f" % v).rstrip("0").rstrip(".") if abs(v) < 10 else "%.1f" % v
    return str(v).replace("|", "\\|")


def ratios(rs):
    """Derived figures: inferd to raw ONNX Runtime at the same batch, raw to
    the PyTorch ceiling, the copy to the batch."""
    by = {r["key"]: r["value"] for r in rs if isinstance(r.get("value"), (int, float))}
    out = []

    def add(what, a, b, note):
        if a in by and b in by and by[b]:
            out.append({"group": "ratio", "what": what, "value": round(by[a] / by[b], 3), "unit": "x", "note": note, "key": "ratio/" + what})

    raws = sorted({k.split("/")[1] for k in by if k.startswith("raw/")})
    for m in raws:
        for bs in (64, 128):
            add("raw %s / torch at batch %d" % (m, bs), "raw/%s/%d" % (m, bs), "torch/%d" % bs, "raw ORT images/s over the PyTorch ceiling")
    for k in sorted(by):
        # inferd/NAME ENDPOINT/C, NAME being MODEL-iINSTANCES-mbMAXBATCH[-...]
        # as visit.sh writes it: against raw ORT at the batch the server ran.
        if not k.startswith("inferd/") or "infer-binary" not in k:
            continue
        _, name, c = k.split("/")
        m = re.match(r"^(?P<model>.+?)-i\d+-mb(?P<mb>\d+)", name)
        if not m:
            continue
        batch = by.get("inferdbatch/%s/%s" % (name, c), int(m.group("mb")))
        sizes = sorted(int(x.split("/")[2]) for x in by if x.startswith("raw/%s/" % m.group("model")))
        fit = [b for b in sizes if b <= max(1, round(batch))] or sizes[:1]
        if fit:
            add("inferd %s c=%s / raw at batch %d" % (name.split()[0], c, fit[-1]), k, "raw/%s/%d" % (m.group("model"), fit[-1]),
                "requests/s (an image each) over raw images/s; the server's mean batch was %.1f" % batch)
    if "h2d/pageable" in by and "raw/resnet50/64" in by:
        batch_ms = 64 * 1000 / by["raw/resnet50/64"]
        for src in ("pageable", "pinned"):
            if "h2d/" + src in by:
                out.append({"group": "ratio", "what": "%s copy / raw resnet50 batch 64" % src,
                            "value": round(by["h2d/" + src] / batch_ms, 3), "unit": "x",
                            "note": "share of a batch's time spent copying its input (%.2f ms batch)" % batch_ms, "key": "ratio/h2d/" + src})
    return out


def cmd_summary(details, out):
    rs = records(details)
    rs += ratios(rs)
    meta = {}
    for p in ("meta.json",):
        fp = os.path.join(details, p)
        if os.path.exists(fp):
            meta = json.load(open(fp))
    lines = ["# GPU visit: %s" % meta.get("title", "inferd"), ""]
    for k in ("date", "device", "gpu", "pack", "smoke", "elapsed", "steps skipped"):
        if k in meta:
            lines.append("- %s: %s" % (k, meta[k]))
    lines += ["", "Every figure of the run, in the order measured; ratios last. Details (logs, profiles, csv, /metrics) are in details.tar.gz.", "",
              "| # | group | figure | value | unit | note |", "|---:|---|---|---:|---|---|"]
    for i, r in enumerate(rs, 1):
        lines.append("| %d | %s | %s | %s | %s | %s |" % (i, fmt(r["group"]), fmt(r["what"]), fmt(r["value"]), fmt(r["unit"]), fmt(r["note"])))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("summary: %d figures in %s" % (len(rs), out))
    return 0


def cmd_archive(details, out):
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(details, arcname="details")
    print("archive: %s (%.1f MiB)" % (out, os.path.getsize(out) / 2**20))
    return 0


def main(a):
    if not a:
        print(__doc__)
        return 2
    c, rest = a[0], a[1:]
    if c == "unpack":
        return cmd_unpack(*rest)
    if c == "cudalibs":
        return cmd_cudalibs(*rest)
    if c == "providers":
        strict = "--strict" in rest
        rest = [x for x in rest if x != "--strict"]
        return cmd_providers(rest[0], rest[1], rest[2], strict, rest[3:])
    if c == "bench":
        return cmd_bench(*rest)
    if c == "torch":
        return cmd_torch(*rest)
    if c == "wait":
        return cmd_wait(*rest)
    if c == "fetch":
        return cmd_fetch(*rest)
    if c == "sweep":
        return cmd_sweep(*rest)
    if c == "opened":
        return cmd_opened(*rest)
    if c == "record":
        d, g, w, v, u = rest[:5]
        record(d, g, w, num(v) if num(v) is not None else v, u, rest[5] if len(rest) > 5 else "")
        return 0
    if c == "meta":
        p = os.path.join(rest[0], "meta.json")
        meta = json.load(open(p)) if os.path.exists(p) else {}
        for kv in rest[1:]:
            k, _, v = kv.partition("=")
            meta[k] = v
        with open(p, "w") as f:
            json.dump(meta, f, indent=1)
        return 0
    if c == "relay":
        return cmd_relay(*rest)
    if c == "has":
        return cmd_has(*rest)
    if c == "summary":
        return cmd_summary(*rest)
    if c == "archive":
        return cmd_archive(*rest)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
