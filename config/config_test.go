package config

import (
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
	}
	files, _ := filepath.Glob("testdata/*.yml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			_, err := Load(f)
			if strings.Contains(name, ".good.") {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded a bad file")
			}
			if w, ok := want[name]; !ok || !strings.Contains(err.Error(), w) {
				t.Errorf("error %q, want it to say %q", err, w)
			}
		})
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
