package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/internal/testbed"
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
	if len(c.Auth.Tenants) == 0 {
		c.Auth.Tenants = nil // tenants: [] documents the empty default
	}
	if !reflect.DeepEqual(c.Auth, d.Auth) || c.TLS != d.TLS {
		t.Errorf("configs/inferd.yaml auth or tls differ from the defaults:\n%+v %+v\n%+v %+v", c.Auth, c.TLS, d.Auth, d.TLS)
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

// Each bad file holds one mistake, and Check says exactly this about it
// (after the file's name), one line. The files that name an ONNX file are
// read by ONNX Runtime and need it.
func TestTestdata(t *testing.T) {
	want := map[string]string{ // bad file -> the whole error, after "FILE: "
		"unknown-key.bad.yml": "config: line 3: field max_batchsize not found in type config.Model",
		"two-unknown-keys.bad.yml": "config: line 4: field max_batchsize not found in type config.Model\n" +
			"testdata/two-unknown-keys.bad.yml: config: line 5: field devise not found in type config.Model",
		"duplicate-name.bad.yml":     `config: models[1].name "m": already used by another model`,
		"bad-builtin.bad.yml":        `config: models[0].path "builtin:resnet51": model: unknown arch "resnet51" (want resnet50 or tiny)`,
		"bad-std.bad.yml":            "config: models[0].preprocess.std has 2 values: want 3 (R, G, B)",
		"bad-resample.bad.yml":       `config: models[0].preprocess.resample "bicubic": want pil or float`,
		"register-short.bad.yml":     "config: register.deregister_after 10s: Consul's minimum is 1m",
		"memory-limit-word.bad.yml":  `config: line 2: "lots" is not a size: want bytes or a number with a unit (KiB, MiB, GiB, KB, MB, GB)`,
		"memory-limit-small.bad.yml": "config: server.memory_limit 1048576 bytes: want at least 16MiB",
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
		"auth-no-keys-file.bad.yml":  "config: auth.keys_file: required when enabled is true",
		"auth-tenant-other.bad.yml":  `config: auth.tenants[1] "other": "other" counts the requests of no known tenant: choose another name`,
		"tls-cert-only.bad.yml":      "config: tls.key: required with cert",
		// The files a config names, which only Check looks at.
		"missing-model.bad.yml":  `config: models[0].path "/nope.onnx": no such file or directory`,
		"missing-labels.bad.yml": `config: models[0].labels "/nope-synset.txt": no such file or directory`,
		"model-dir.bad.yml":      `config: models[0].path "testdata": not a regular file, want an ONNX file`,
		"not-onnx.bad.yml":       `config: models[0].path "testdata/not-onnx.onnx": not an ONNX model: onnx runtime says: failed to load model because protobuf parsing failed (37 bytes)`,
		"empty-onnx.bad.yml":     `config: models[0].path "testdata/empty.onnx": not an ONNX model: the file is empty`,
		"dynamic-unbatched.bad.yml": `config: models[0].path "testdata/dynamic-unbatched.onnx": input "input0" has shape [2,N]: dimension 1 is dynamic, ` +
			`and the model has no batch dimension (input "input1" [3] shares no batch dimension with input "input0" [2,N]), so every dimension must be fixed`,
		// The keys file and the certificate, as the server loads them.
		"auth-key-in-clear.bad.yml": `config: auth.keys_file "testdata/keys-in-clear.yaml": tenants.ci.keys[0]: want 64 hex digits, the SHA-256 of a key (inferd -new-key ci), not the key`,
		"auth-missing-keys.bad.yml": `config: auth.keys_file "/nope-keys.yaml": no such file or directory`,
		"tls-missing.bad.yml":       `config: tls.cert "/nope.pem": no such file or directory`,
		// What the model says of the labels and the preprocessing (a
		// builtin: model's inputs and outputs are known without the file).
		"labels-count.bad.yml":         `config: models[0].labels "testdata/999-labels.txt": 999 labels, model output "output" has 1000 classes`,
		"preprocess-size.bad.yml":      "config: models[0].preprocess.size 256: the model takes 224x224 images",
		"preprocess-resize.bad.yml":    "config: models[0].preprocess.resize 200 out of range: expected 224 (size) .. 8192",
		"mean-without-std.bad.yml":     "config: models[0].preprocess.std[0] is 0: expected a finite number > 0 (set all three, or leave mean and std both zero for ImageNet's)",
		"resample-float-uint8.bad.yml": `config: models[0].preprocess.resample "float" takes dtype "float32", not "uint8"`,
	}
	needORT := map[string]bool{"not-onnx.bad.yml": true, "empty-onnx.bad.yml": true, "dynamic-unbatched.bad.yml": true, "oip-example.good.yml": true}
	files, _ := filepath.Glob("testdata/*.yml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			if needORT[name] {
				testbed.NeedORT(t)
			}
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
			if name == "three-mistakes.bad.yml" {
				return // TestCheckReportsEveryMistake reads it whole
			}
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expected error for %s; it says:\n%v", name, err)
			}
			if err.Error() != f+": "+w {
				t.Errorf("error\n%v\nwant\n%s: %s", err, f, w)
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

// A value that breaks two rules is said once, by its owner (package gpu
// for max_batch and instances), in the file's terms, each on its line.
func TestValidateSaysEachProblemOnce(t *testing.T) {
	_, err := Parse([]byte("models:\n  - {name: m, device: cpu, max_batch: -1, instances: -2, batcher: {priorities: -1, queue_capacity: 1000000000}}\n"))
	want := "config: models[0].instances -2: must be >= 1\nconfig: models[0].max_batch -1: must be >= 1\n" +
		"config: models[0].batcher.queue_capacity 1000000000: must be <= 16777216\nconfig: models[0].batcher.priorities -1: must be >= 1"
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

// A library given as a path that is not there is said once, and the
// model files are then not read (this one is no model). The default
// config's builtin model needs neither a file nor the library.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	onnx, labels := filepath.Join(dir, "m.onnx"), filepath.Join(dir, "synset.txt")
	os.WriteFile(onnx, []byte("not an ONNX model"), 0o644)
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
	if err := Default().Check(); err != nil {
		t.Errorf("the default config: %v", err)
	}
}

// Model files are read as startup reads them: their inputs and outputs,
// against which the labels and the preprocessing are checked. Every
// problem is said, one line each.
func TestCheckModelFiles(t *testing.T) {
	testbed.NeedORT(t)
	dir := t.TempDir()
	tiny, err := model.Ensure(dir, model.Spec{Arch: model.ArchTiny})
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(tiny)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lines := func(n int, end string) []byte {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "n%08d class %d\n", i, i)
		}
		return []byte(b.String() + end)
	}
	trunc := write("trunc.onnx", good[:len(good)/2])
	labels1000 := write("1000.txt", lines(1000, ""))
	blankEnd := write("blank-end.txt", lines(1000, "\n  \n"))
	labels999 := write("999.txt", lines(999, ""))
	labels1001 := write("1001.txt", lines(1001, ""))
	for _, c := range []struct {
		name   string
		models string // the models section
		want   []string
	}{
		{"model and labels agree", fmt.Sprintf("{name: m, path: %q, labels: %q, device: cpu}", tiny, labels1000), nil},
		{"blank lines at the end are no labels", fmt.Sprintf("{name: m, path: %q, labels: %q, device: cpu}", tiny, blankEnd), nil},
		{"one label short", fmt.Sprintf("{name: m, path: %q, labels: %q, device: cpu}", tiny, labels999),
			[]string{fmt.Sprintf(`config: models[0].labels %q: 999 labels, model output "output" has 1000 classes`, labels999)}},
		{"one label too many", fmt.Sprintf("{name: m, path: %q, labels: %q, device: cpu}", tiny, labels1001),
			[]string{fmt.Sprintf(`config: models[0].labels %q: 1001 labels, model output "output" has 1000 classes`, labels1001)}},
		{"a crop the model does not take", fmt.Sprintf("{name: m, path: %q, device: cpu, preprocess: {size: 299}}", tiny),
			[]string{"config: models[0].preprocess.size 299: the model takes 224x224 images"}},
		// A truncated model is no model, and its labels cannot be counted
		// against it; the second model's labels still are.
		{"every mistake", fmt.Sprintf("{name: a, path: %q, labels: %q, device: cpu}\n  - {name: b, path: %q, labels: %q, device: cpu}", trunc, labels999, tiny, labels999),
			[]string{
				fmt.Sprintf(`config: models[0].path %q: not an ONNX model: onnx runtime says: failed to load model because protobuf parsing failed (%d bytes)`, trunc, len(good)/2),
				fmt.Sprintf(`config: models[1].labels %q: 999 labels, model output "output" has 1000 classes`, labels999),
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte("models:\n  - " + c.models + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Check()
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := strings.Join(c.want, "\n"); err == nil || err.Error() != want {
				t.Errorf("check said\n%v\nwant\n%s", err, want)
			}
		})
	}
	// A process has one ONNX Runtime: once loaded, it reads the files
	// whatever runtime.library says, as a SIGHUP reload opens the models
	// with it.
	cfg, err := Parse(fmt.Appendf(nil, "runtime: {library: libonnxruntime-elsewhere.so}\nmodels:\n  - {name: m, path: %q, device: cpu}\n", tiny))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil {
		t.Errorf("with the runtime loaded: %v", err)
	}
}

// What Check knows of a builtin: model without generating it is what ONNX
// Runtime reads in the generated file.
func TestBuiltinTensors(t *testing.T) {
	testbed.NeedORT(t)
	dir := t.TempDir()
	for _, name := range []string{"tiny", "tiny-uint8", "tiny-fp16", "tiny-fp16-uint8-logits"} {
		s, err := model.ParseName(name)
		if err != nil {
			t.Fatal(err)
		}
		path, err := model.Ensure(dir, s)
		if err != nil {
			t.Fatal(err)
		}
		ins, outs, err := gpu.Inspect("", path)
		if err != nil {
			t.Fatal(err)
		}
		wantIn, wantOut := builtinTensors(s)
		if !sameTensors(ins, wantIn) || !sameTensors(outs, wantOut) {
			t.Errorf("%s: the file has %+v -> %+v; builtinTensors says %+v -> %+v", name, ins, outs, wantIn, wantOut)
		}
	}
}

func sameTensors(a, b []gpu.TensorInfo) bool {
	return slices.EqualFunc(a, b, func(x, y gpu.TensorInfo) bool {
		return x.Name == y.Name && x.Datatype == y.Datatype && slices.Equal(x.Shape, y.Shape)
	})
}

// Every inferd config shipped in configs/ passes the check startup runs.
func TestShippedConfigsCheck(t *testing.T) {
	files, _ := filepath.Glob("../configs/inferd*.y*ml")
	if len(files) == 0 {
		t.Fatal("no inferd config in configs/")
	}
	for _, f := range files {
		if err := check(f); err != nil {
			t.Errorf("%s: %v", f, err)
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

// The auth and tls sections are checked as the server loads them: the
// keys file parses, the certificate and key are a pair; every problem is
// a line of its own, naming the key.
func TestCheckAuthAndTLS(t *testing.T) {
	dir := t.TempDir()
	certs := testbed.NewCerts(t, dir)
	other := testbed.NewCerts(t, t.TempDir())
	keys := filepath.Join(dir, "keys.yaml")
	os.WriteFile(keys, []byte("tenants:\n  a: {keys: [], models: ['*'], rate: 5}\n"), 0o600)
	good, err := Parse(fmt.Appendf(nil, "auth: {enabled: true, keys_file: %q}\ntls: {cert: %q, key: %q}\n", keys, certs.CertFile, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := good.Check(); err != nil {
		t.Errorf("a keys file and a certificate that load: %v", err)
	}
	os.WriteFile(keys, []byte("tenants:\n  a: {rate: -5, burst: -1}\n"), 0o600)
	bad, err := Parse(fmt.Appendf(nil, "auth: {enabled: true, keys_file: %q}\ntls: {cert: %q, key: %q}\n", keys, certs.CertFile, other.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf(`config: auth.keys_file %q: tenants.a.rate -5: must be >= 0 (0: no limit)`, keys),
		fmt.Sprintf(`config: auth.keys_file %q: tenants.a.burst -1: want 0 (the rate rounded up) to 1048576`, keys),
		fmt.Sprintf(`config: tls.cert %q, key %q: tls: private key does not match public key`, certs.CertFile, other.KeyFile),
	}
	if err := bad.Check(); err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("check said\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

// The ONNX files of testdata are the pass-through models package model
// writes (model.WritePassThrough): regenerate them if this fails.
func TestPassThroughTestdata(t *testing.T) {
	for name, ins := range map[string][]model.Tensor{
		"testdata/oip-example.onnx": model.OIPExample,
		"testdata/dynamic-unbatched.onnx": {
			{Name: "input0", Datatype: "UINT32", Shape: []int64{2, -1}},
			{Name: "input1", Datatype: "BOOL", Shape: []int64{3}},
		},
	} {
		var buf bytes.Buffer
		if err := model.WritePassThrough(&buf, ins); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, buf.Bytes()) {
			t.Errorf("%s differs from what model.WritePassThrough writes for %+v", name, ins)
		}
	}
}
