package main

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The layout of a CUDA fat binary, as nvcc writes it into .nv_fatbin: a
// run of containers, each a 16-byte header followed by its entries; each
// entry a header (64 bytes, 112 for sm_100 and later) followed by its
// payload, padded to 8 bytes. Payloads are cubins (kind 2) or PTX (kind 1),
// zstd-compressed by CUDA 12.8+. Nothing points inside a container: a
// wrapper in .nvFatBinSegment holds the address of its header, and the
// driver walks the entries from there up to the size the header gives.
const (
	containerMagic  = 0xBA55ED50
	containerHeader = 16
	entryHeaderMin  = 64
)

// Entry kinds.
const (
	KindPTX   = 1
	KindCubin = 2
)

// Container is one fat binary in the section: the unit a wrapper
// registers with the CUDA runtime.
type Container struct {
	Off     int // offset of its header in the section
	Size    int // header and entries: 16 + the header's fat size
	Entries []Entry
}

// Entry is one code image of a container.
type Entry struct {
	Off        int // offset of its header in the section
	HeaderSize int
	Payload    int // padded payload size: the next entry is at Off+HeaderSize+Payload
	Kind       uint16
	Arch       uint32 // 90 for sm_90
}

// Len is the entry's length in the section, header and padded payload.
func (e Entry) Len() int { return e.HeaderSize + e.Payload }

// Parse reads every container of a .nv_fatbin section. Zero bytes between
// containers (alignment, or what Keep left) are skipped.
func Parse(sec []byte) ([]Container, error) {
	var cs []Container
	for p := 0; p < len(sec); {
		if sec[p] == 0 {
			p++
			continue
		}
		if p+containerHeader > len(sec) || binary.LittleEndian.Uint32(sec[p:]) != containerMagic {
			return nil, fmt.Errorf("offset %#x: no fat binary magic", p)
		}
		hs := int(binary.LittleEndian.Uint16(sec[p+6:]))
		fat := binary.LittleEndian.Uint64(sec[p+8:])
		if hs != containerHeader || fat > uint64(len(sec)-p-hs) {
			return nil, fmt.Errorf("offset %#x: container header size %d, fat size %d: beyond the section (%d bytes)", p, hs, fat, len(sec))
		}
		c := Container{Off: p, Size: hs + int(fat)}
		end := p + c.Size
		for q := p + hs; q < end; {
			if q+entryHeaderMin > end {
				return nil, fmt.Errorf("offset %#x: entry header crosses the container's end %#x", q, end)
			}
			e := Entry{
				Off:        q,
				Kind:       binary.LittleEndian.Uint16(sec[q:]),
				HeaderSize: int(binary.LittleEndian.Uint32(sec[q+4:])),
				Arch:       binary.LittleEndian.Uint32(sec[q+28:]),
			}
			payload := binary.LittleEndian.Uint64(sec[q+8:])
			if e.HeaderSize < entryHeaderMin || payload > uint64(end-q-e.HeaderSize) {
				return nil, fmt.Errorf("offset %#x: entry header size %d, payload %d: beyond the container's end %#x", q, e.HeaderSize, payload, end)
			}
			e.Payload = int(payload)
			c.Entries = append(c.Entries, e)
			q += e.Len()
		}
		cs = append(cs, c)
		p = end
	}
	return cs, nil
}

// Stats say what Keep kept.
type Stats struct {
	Containers, Untouched int // all; those left whole (no entry for the arch)
	Entries, Kept         int
	Bytes, KeptBytes      int // entries' bytes, headers included
}

// Keep rewrites sec in place so that every container holding an entry for
// arch holds only those, in their order, byte for byte, with its fat size
// cut to match; what it frees is zeroed. A container without such an entry
// is left whole: on that GPU it behaves as before (it could not load
// there anyway). No container moves, so the wrappers' addresses, the
// relocations and every other section stay valid: the ELF file keeps its
// size and layout, and the zeros compress to almost nothing.
func Keep(sec []byte, arch uint32) (Stats, error) {
	cs, err := Parse(sec)
	if err != nil {
		return Stats{}, err
	}
	var st Stats
	for _, c := range cs {
		st.Containers++
		st.Entries += len(c.Entries)
		var kept []Entry
		for _, e := range c.Entries {
			st.Bytes += e.Len()
			if e.Arch == arch {
				kept = append(kept, e)
			}
		}
		if len(kept) == 0 {
			st.Untouched++
			continue
		}
		// Entries only move towards the container's start, so copying them
		// in order never overwrites one not yet copied.
		w := c.Off + containerHeader
		for _, e := range kept {
			w += copy(sec[w:], sec[e.Off:e.Off+e.Len()])
			st.Kept++
			st.KeptBytes += e.Len()
		}
		binary.LittleEndian.PutUint64(sec[c.Off+8:], uint64(w-c.Off-containerHeader))
		clear(sec[w : c.Off+c.Size])
	}
	return st, nil
}

// section returns the file offset and size of the ELF section name.
func section(r io.ReaderAt, name string) (off, size int64, err error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return 0, 0, err
	}
	s := f.Section(name)
	if s == nil {
		return 0, 0, fmt.Errorf("no %s section", name)
	}
	if s.Type == elf.SHT_NOBITS {
		return 0, 0, errors.New(name + " has no bytes in the file")
	}
	return int64(s.Offset), int64(s.Size), nil
}
