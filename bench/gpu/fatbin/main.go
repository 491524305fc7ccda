// Command fatbin reduces the CUDA code of a shared library to one GPU
// architecture, for a GPU visit that takes 64 MiB per transfer: ONNX
// Runtime's CUDA provider carries cubins for sm_75 to sm_120 (166 MB of its
// 230 MB); an H100 or H200 loads only the sm_90 ones.
//
//	fatbin list FILE                      containers and entries per architecture
//	fatbin keep -arch 90 -o OUT FILE      OUT: FILE with only the sm_90 entries
//
// keep leaves every byte outside .nv_fatbin as it was and moves no
// container (see Keep); bench/gpu/check-provider.py proves it on the result
// with a parser of its own.
package main

import (
	"bytes"
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

const sectionName = ".nv_fatbin"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  fatbin list FILE
  fatbin keep -arch 90 -o OUT FILE
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "list":
		if len(args) != 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = list(args[1], stdout)
	case "keep":
		fs := flag.NewFlagSet("fatbin keep", flag.ContinueOnError)
		fs.SetOutput(stderr)
		arch := fs.Uint("arch", 90, "the SM `architecture` to keep (90: H100, H200)")
		out := fs.String("o", "", "output `file`")
		if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 || *out == "" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = keep(fs.Arg(0), *out, uint32(*arch), stdout)
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "fatbin:", err)
		return 1
	}
	return 0
}

// load reads path and returns it with its .nv_fatbin section's bytes.
func load(path string) (file, sec []byte, err error) {
	file, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	off, size, err := section(bytes.NewReader(file), sectionName)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if off+size > int64(len(file)) {
		return nil, nil, fmt.Errorf("%s: %s ends past the file", path, sectionName)
	}
	return file, file[off : off+size], nil
}

func list(path string, w io.Writer) error {
	_, sec, err := load(path)
	if err != nil {
		return err
	}
	cs, err := Parse(sec)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	type row struct{ n, bytes int }
	rows := map[[2]uint32]*row{}
	used := 0
	for _, c := range cs {
		used += c.Size
		for _, e := range c.Entries {
			k := [2]uint32{uint32(e.Kind), e.Arch}
			if rows[k] == nil {
				rows[k] = &row{}
			}
			rows[k].n++
			rows[k].bytes += e.Len()
		}
	}
	fmt.Fprintf(w, "%s: %s %d bytes, %d containers using %d bytes\n", filepath.Base(path), sectionName, len(sec), len(cs), used)
	keys := make([][2]uint32, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]uint32) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	for _, k := range keys {
		kind := map[uint32]string{KindPTX: "ptx", KindCubin: "cubin"}[k[0]]
		if kind == "" {
			kind = fmt.Sprintf("kind%d", k[0])
		}
		fmt.Fprintf(w, "  %-6s sm_%-4d %5d entries %11d bytes\n", kind, k[1], rows[k].n, rows[k].bytes)
	}
	return nil
}

func keep(in, out string, arch uint32, w io.Writer) error {
	file, sec, err := load(in)
	if err != nil {
		return err
	}
	st, err := Keep(sec, arch)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if st.Kept == 0 {
		return fmt.Errorf("%s: no sm_%d entry in %d containers: nothing would run on that GPU", in, arch, st.Containers)
	}
	fi, err := os.Stat(in)
	if err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, file, fi.Mode().Perm()); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Fprintf(w, "fatbin: %s: kept %d of %d entries (sm_%d, %d of %d bytes) in %d containers; %d without sm_%d left whole\n",
		filepath.Base(out), st.Kept, st.Entries, arch, st.KeptBytes, st.Bytes, st.Containers, st.Untouched, arch)
	return nil
}
