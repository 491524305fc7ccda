package main

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inferd/inferd/internal/testbed"
)

type fakeEntry struct {
	arch    uint32
	header  int // 64, or 112 as sm_100+ cubins have
	payload int // unpadded
}

// container builds a fat binary container as nvcc lays it out, with
// random payloads; it returns the container and each entry's bytes.
func container(r *rand.Rand, es ...fakeEntry) ([]byte, [][]byte) {
	var body []byte
	var raw [][]byte
	for _, e := range es {
		padded := (e.payload + 7) &^ 7
		b := make([]byte, e.header+padded)
		binary.LittleEndian.PutUint16(b[0:], KindCubin)
		binary.LittleEndian.PutUint16(b[2:], 0x0101)
		binary.LittleEndian.PutUint32(b[4:], uint32(e.header))
		binary.LittleEndian.PutUint64(b[8:], uint64(padded))
		binary.LittleEndian.PutUint32(b[16:], uint32(e.payload))
		binary.LittleEndian.PutUint32(b[28:], e.arch)
		for i := e.header; i < e.header+e.payload; i++ {
			b[i] = byte(r.IntN(256))
		}
		raw = append(raw, b)
		body = append(body, b...)
	}
	h := make([]byte, containerHeader)
	binary.LittleEndian.PutUint32(h[0:], containerMagic)
	binary.LittleEndian.PutUint16(h[4:], 1)
	binary.LittleEndian.PutUint16(h[6:], containerHeader)
	binary.LittleEndian.PutUint64(h[8:], uint64(len(body)))
	return append(h, body...), raw
}

func TestKeep(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// A: every architecture, sm_90 in the middle; B: sm_120 only (left
	// whole); C: sm_90 only (unchanged); D: two sm_90 entries among others.
	a, araw := container(r, fakeEntry{75, 64, 1001}, fakeEntry{90, 64, 2003}, fakeEntry{120, 112, 517})
	b, _ := container(r, fakeEntry{120, 112, 300})
	c, _ := container(r, fakeEntry{90, 64, 64})
	d, draw := container(r, fakeEntry{80, 64, 10}, fakeEntry{90, 64, 33}, fakeEntry{86, 64, 7}, fakeEntry{90, 64, 1})
	sec := bytes.Join([][]byte{a, b, c, d}, nil)
	orig := bytes.Clone(sec)

	st, err := Keep(sec, 90)
	if err != nil {
		t.Fatal(err)
	}
	if st != (Stats{Containers: 4, Untouched: 1, Entries: 9, Kept: 4, Bytes: st.Bytes, KeptBytes: len(araw[1]) + len(c) - 16 + len(draw[1]) + len(draw[3])}) {
		t.Errorf("stats %+v", st)
	}
	cs, err := Parse(sec)
	if err != nil {
		t.Fatalf("the reduced section does not parse: %v", err)
	}
	if len(cs) != 4 {
		t.Fatalf("%d containers after Keep, want 4", len(cs))
	}
	offs := []int{0, len(a), len(a) + len(b), len(a) + len(b) + len(c)}
	want := [][][]byte{{araw[1]}, {b[16:]}, {c[16:]}, {draw[1], draw[3]}}
	for i, c := range cs {
		if c.Off != offs[i] {
			t.Errorf("container %d moved: at %#x, was at %#x", i, c.Off, offs[i])
		}
		var got [][]byte
		for _, e := range c.Entries {
			got = append(got, sec[e.Off:e.Off+e.Len()])
		}
		if !bytes.Equal(bytes.Join(got, nil), bytes.Join(want[i], nil)) {
			t.Errorf("container %d: entries are not the original's sm_90 ones", i)
		}
	}
	// What the containers no longer use is zero; B is byte for byte as it was.
	for i, c := range cs {
		end := len(sec)
		if i+1 < len(cs) {
			end = cs[i+1].Off
		}
		if bytes.ContainsFunc(sec[c.Off+c.Size:end], func(r rune) bool { return r != 0 }) {
			t.Errorf("container %d: freed bytes are not zero", i)
		}
	}
	if !bytes.Equal(sec[offs[1]:offs[2]], orig[offs[1]:offs[2]]) {
		t.Error("the container without sm_90 changed")
	}
	// Keeping again changes nothing.
	again := bytes.Clone(sec)
	if _, err := Keep(again, 90); err != nil || !bytes.Equal(again, sec) {
		t.Errorf("a second Keep changed the section (err %v)", err)
	}
}

func TestParseRejects(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	good, _ := container(r, fakeEntry{90, 64, 100})
	cases := []struct {
		name string
		mut  func([]byte) []byte
		want string
	}{
		{"bad magic", func(b []byte) []byte { b[0] = 1; return b }, "no fat binary magic"},
		{"fat size past the section", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[8:], 1<<20); return b }, "beyond the section"},
		{"entry payload past the container", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[16+8:], 1<<20); return b }, "beyond the container"},
		{"entry header too small", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16+4:], 8); return b }, "entry header size 8"},
		{"truncated entry header", func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[8:], 20)
			return b[:16+20]
		}, "crosses the container's end"},
	}
	for _, c := range cases {
		_, err := Parse(c.mut(bytes.Clone(good)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// The released provider, when `make setup GPU=1` put it in .deps/ort:
// 289 containers, 288 of them with sm_90 code.
func TestRealProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the 230 MB CUDA provider")
	}
	lib := testbed.ORTLibrary()
	if lib == "" {
		t.Skip("no ONNX Runtime: run make setup GPU=1")
	}
	in := filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_cuda.so")
	if _, err := os.Stat(in); err != nil {
		t.Skipf("no CUDA provider beside %s: run make setup GPU=1", lib)
	}
	out := filepath.Join(t.TempDir(), "reduced.so")
	var stdout, stderr strings.Builder
	if code := run([]string{"keep", "-arch", "90", "-o", out, in}, &stdout, &stderr); code != 0 {
		t.Fatalf("keep: exit %d: %s", code, stderr.String())
	}
	t.Log(strings.TrimSpace(stdout.String()))
	_, osec, err := load(in)
	if err != nil {
		t.Fatal(err)
	}
	_, rsec, err := load(out)
	if err != nil {
		t.Fatalf("the reduced file: %v", err)
	}
	images := func(sec []byte) (out [][]byte) {
		cs, err := Parse(sec)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			for _, e := range c.Entries {
				if e.Arch == 90 {
					out = append(out, sec[e.Off:e.Off+e.Len()])
				}
			}
		}
		return out
	}
	o, r := images(osec), images(rsec)
	if len(o) == 0 || len(o) != len(r) || !bytes.Equal(bytes.Join(o, nil), bytes.Join(r, nil)) {
		t.Errorf("sm_90 images: %d in the original, %d reduced, or not byte for byte equal", len(o), len(r))
	}
	var listed strings.Builder
	if code := run([]string{"list", out}, &listed, &stderr); code != 0 {
		t.Fatalf("list: %s", stderr.String())
	}
	if !strings.Contains(listed.String(), "sm_90 ") || strings.Contains(listed.String(), "sm_80 ") {
		t.Errorf("list of the reduced file:\n%s", listed.String())
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"nope"}, {"list"}, {"keep", "x"}, {"keep", "-o", "y"}} {
		var out, errb strings.Builder
		if code := run(args, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage:") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errb.String())
		}
	}
	var out, errb strings.Builder
	if code := run([]string{"list", "/nonexistent"}, &out, &errb); code != 1 {
		t.Errorf("a missing file: exit %d", code)
	}
}
