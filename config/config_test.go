package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/model"
)

func TestShippedConfigLoads(t *testing.T) {
	c, err := Load("../configs/inferd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	// The shipped file documents the defaults: it must mean the same.
	if c.Listen != d.Listen || c.Server != d.Server || len(c.Models) != 1 || c.Models[0].Path != d.Models[0].Path {
		t.Errorf("configs/inferd.yaml differs from the defaults:\n%+v\n%+v", c, d)
	}
	if len(c.Register.Tags) == 0 {
		c.Register.Tags = nil // tags: [] documents the empty default
	}
	if !reflect.DeepEqual(c.Register, d.Register) {
		t.Errorf("configs/inferd.yaml register differs from the defaults:\n%+v\n%+v", c.Register, d.Register)
	}
	if c.Models[0].Batcher.DefaultTimeout != 30*time.Second || c.Models[0].Preprocess.Resize != 256 {
		t.Errorf("model settings not read: %+v", c.Models[0])
	}
}

func TestEmptyMeansDefault(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8000" || len(c.Models) != 1 || c.Models[0].Name != "resnet50" || c.Models[0].Device != "auto" {
		t.Errorf("empty config = %+v", c)
	}
}

func TestTestdata(t *testing.T) {
	want := map[string]string{ // bad file -> words the error must contain
		"unknown-key.bad.yml":        "field max_batchsize not found",
		"duplicate-name.bad.yml":     `models[1].name "m": already used`,
		"bad-builtin.bad.yml":        `models[0].path: builtin model "resnet51"`,
		"bad-std.bad.yml":            "models[0].preprocess.std has 2 values: want 3",
		"bad-resample.bad.yml":       `models[0].preprocess.resample "bicubic": want pil or float`,
		"register-short.bad.yml":     "register.deregister_after 10s: Consul's minimum is 1m",
		"memory-limit-word.bad.yml":  `"lots" is not a size`,
		"memory-limit-small.bad.yml": "server.memory_limit 1048576 bytes: want at least 16MiB",
		// What gpu.Open and batcher.New refuse, said before anything opens.
		"device-gpu.bad.yml":         `config: models[0].device "gpu": want auto, cpu or cuda:N`,
		"device-cuda-x.bad.yml":      `config: models[0].device "cuda:x": want auto, cpu or cuda:N`,
		"buckets-descending.bad.yml": "config: models[0].buckets [8 4]: must be strictly ascending",
		"buckets-beyond-max.bad.yml": "config: models[0].buckets [1 2 4 8 16]: the last must equal max_batch 8",
		"max-batch-huge.bad.yml":     "config: models[1].max_batch 100000: must be <= 65536",
		"instances-huge.bad.yml":     "config: models[0].instances 2000: must be <= 1024",
		"priorities-huge.bad.yml":    "config: models[0].batcher.priorities 100: must be <= 64",
		"cudnn-algo.bad.yml":         `config: models[0].cuda.cudnn_conv_algo_search "FAST": want EXHAUSTIVE, HEURISTIC or DEFAULT`,
		"arena-strategy.bad.yml":     `config: models[0].cuda.arena_extend_strategy "kDouble": want kNextPowerOfTwo or kSameAsRequested`,
		"listen-no-port.bad.yml":     `config: listen "8000": want HOST:PORT, e.g. :8000`,
		// The files a config names, which only Check looks at.
		"missing-model.bad.yml":  `config: models[0].path "/nope.onnx": no such file or directory`,
		"missing-labels.bad.yml": `config: models[0].labels "/nope-synset.txt": no such file or directory`,
		"model-dir.bad.yml":      `config: models[0].path "testdata": not a regular file, want an ONNX file`,
		"three-mistakes.bad.yml": `config: models[0].device "gpu"`, // TestCheckReportsEveryMistake reads it whole
	}
	files, _ := filepath.Glob("testdata/*.yml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			err := check(f)
			if strings.Contains(name, ".good.") {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded a bad file")
			}
			if w, ok := want[name]; !ok || !strings.Contains(err.Error(), w) || !strings.HasPrefix(err.Error(), f+": ") {
				t.Errorf("error %q, want it to name the file and say %q", err, w)
			}
		})
	}
}

// check is the startup check of the file at path: Read, then Check.
func check(path string) error {
	c, err := Read(path)
	if err != nil {
		return err
	}
	return c.Check()
}

// A file with three mistakes in two models says all three, one line each,
// each naming the file and the key.
func TestCheckReportsEveryMistake(t *testing.T) {
	const f = "testdata/three-mistakes.bad.yml"
	err := check(f)
	if err == nil {
		t.Fatal("three mistakes passed the check")
	}
	want := []string{
		f + `: config: models[0].device "gpu": want auto, cpu or cuda:N`,
		f + ": config: models[0].buckets [8 4]: must be strictly ascending",
		f + `: config: models[1].labels "/nope-synset.txt": no such file or directory`,
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("check said\n%s\nwant\n%s", err, strings.Join(want, "\n"))
	}
	// Load checks the values only: the two that are not about files.
	if _, err := Load(f); err == nil || strings.Count(err.Error(), "\n") != 1 || strings.Contains(err.Error(), "labels") {
		t.Errorf("Load said %v, want the device and the buckets", err)
	}
}

// A value that breaks two rules is said once: a negative max_batch is
// config's own error, not gpu's and the batcher's again.
func TestValidateSaysEachProblemOnce(t *testing.T) {
	_, err := Parse([]byte("models:\n  - {name: m, device: cpu, max_batch: -1, instances: -2}\n"))
	want := "config: models[0].instances -2: must be >= 0\nconfig: models[0].max_batch -1: must be >= 0"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want\n%s", err, want)
	}
}

// Device auto is checked as the server opens it: cuda:0 first, so
// max_batch defaults to 64 and buckets must end there.
func TestCheckDevice(t *testing.T) {
	for _, ok := range []string{"auto", "cpu", "cuda", "cuda:0", "cuda:3"} {
		if err := CheckDevice(ok); err != nil {
			t.Errorf("CheckDevice(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "gpu", "GPU0", "cuda:x", "cuda:-1", "Auto"} {
		if err := CheckDevice(bad); err == nil || !strings.Contains(err.Error(), "want auto, cpu or cuda:N") {
			t.Errorf("CheckDevice(%q) = %v", bad, err)
		}
	}
	_, err := Parse([]byte("models:\n  - {name: m, buckets: [1, 2, 4, 8]}\n"))
	if err == nil || !strings.Contains(err.Error(), "the last must equal max_batch 64") {
		t.Errorf("auto with buckets to 8: %v", err)
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	onnx, labels := filepath.Join(dir, "m.onnx"), filepath.Join(dir, "synset.txt")
	os.WriteFile(onnx, []byte("not checked beyond being a readable file"), 0o644)
	os.WriteFile(labels, []byte("n01440764 tench\n"), 0o644)
	c, err := Parse(fmt.Appendf(nil, "runtime: {library: %q}\nmodels:\n  - {name: m, path: %q, labels: %q, device: cpu}\n",
		filepath.Join(dir, "libonnxruntime.so.1"), onnx, labels))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check()
	if want := `config: runtime.library "` + dir + `/libonnxruntime.so.1": no such file or directory`; err == nil || err.Error() != want {
		t.Errorf("check said %v, want %s", err, want)
	}
	c.Runtime.Library = "libonnxruntime.so.1" // a soname: the dynamic linker's to find
	if err := c.Check(); err != nil {
		t.Error(err)
	}
	if err := Default().Check(); err != nil {
		t.Errorf("the default config: %v", err)
	}
}

func TestBuiltinSpecRoundTrips(t *testing.T) {
	for _, s := range []model.Spec{
		{}, {Arch: "tiny"}, {DType: "float16"}, {Input: "uint8"}, {Arch: "tiny", DType: "float16", Input: "uint8", Logits: true, Seed: 7},
	} {
		got, err := BuiltinSpec(s.Name())
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		if got.Name() != s.Name() {
			t.Errorf("BuiltinSpec(%q).Name() = %q", s.Name(), got.Name())
		}
	}
	for _, bad := range []string{"resnet51", "tiny-fp8", "tiny-seed", ""} {
		if _, err := BuiltinSpec(bad); err == nil {
			t.Errorf("BuiltinSpec(%q) succeeded", bad)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !os.IsNotExist(err) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("error %v", err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"1048576": 1 << 20, "512MiB": 512 << 20, "2GiB": 2 << 30, "2 GB": 2e9, "1.5KiB": 1536, "64KB": 64000, "7B": 7,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1MiB", "1PiB0", "MiB", "1e30GiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded", bad)
		}
	}
	for b, want := range map[ByteSize]string{512 << 20: "512MiB", 3 << 30: "3GiB", 1000: "1000B", 1536: "1536B"} {
		if got := b.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(b), got, want)
		}
	}
	c, err := Load("testdata/limits.good.yml")
	if err != nil || c.Server.MemoryLimit != 2<<30 || c.Server.MaxConnectionsPerClient != 64 {
		t.Fatalf("limits.good.yml: %+v, %v", c.Server, err)
	}
}
