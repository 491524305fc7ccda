package gpustat

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/VictoriaMetrics/metrics"
)

const fakeLibEnv = "GPUSTAT_FAKE_NVML"

// The whole path a GPU host takes, dlopen and cgo calls to nvmlShutdown,
// against a stand-in libnvidia-ml built from testdata/fakenvml.c. It runs
// in a child process: a process keeps the NVML symbols it bound once, so
// a later test of the host's own library would call the stand-in.
func TestFakeLibrary(t *testing.T) {
	if lib := os.Getenv(fakeLibEnv); lib != "" {
		fakeLibraryChild(t, lib)
		return
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("%s not found: the stand-in library is C", cc)
	}
	so := filepath.Join(t.TempDir(), "libfakenvml.so")
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", so, filepath.Join("testdata", "fakenvml.c")).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cc, err, out)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFakeLibrary$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), fakeLibEnv+"="+so)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestFakeLibrary") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

func fakeLibraryChild(t *testing.T, lib string) {
	var logs bytes.Buffer
	set := metrics.NewSet()
	s := register(set, logTo(&logs), func(log *slog.Logger) (Source, error) {
		return openLib(nvml.New(nvml.WithLibraryPath(lib)), log)
	})
	if s == nil {
		t.Fatalf("off with the stand-in library:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `msg="gpu telemetry on" devices=2 gpus="0: NVIDIA H200 GPU-fake-0, 1: NVIDIA H200 GPU-fake-1"`) {
		t.Errorf("log:\n%s", logs.String())
	}
	text := scrape(set)
	t.Logf("/metrics:\n%s", text)
	const l0, l1 = `{gpu="0",uuid="GPU-fake-0",name="NVIDIA H200"} `, `{gpu="1",uuid="GPU-fake-1",name="NVIDIA H200"} `
	for _, want := range []string{
		"inferd_gpu_utilization_ratio" + l0 + "0.87\n",
		"inferd_gpu_utilization_ratio" + l1 + "0.07\n",
		// v2, reserve left out: the stand-in fails a wrong struct version.
		"inferd_gpu_memory_used_bytes" + l0 + "42949672960\n",
		"inferd_gpu_memory_used_bytes" + l1 + "21474836480\n",
		"inferd_gpu_memory_total_bytes" + l1 + "150754820096\n",
		"inferd_gpu_power_watts" + l0 + "512.345\n",
		"inferd_gpu_power_limit_watts" + l1 + "700\n",
		"inferd_gpu_energy_joules_total" + l0 + "123456.789\n",
		"inferd_gpu_temperature_celsius" + l1 + "46\n",
		"inferd_gpu_sm_clock_hertz" + l0 + "1980000000\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The second board reports no power: no series for it.
	if strings.Contains(text, "inferd_gpu_power_watts"+l1) || strings.Contains(text, "inferd_gpu_energy_joules_total"+l1) {
		t.Errorf("power series for a board without power:\n%s", text)
	}
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}
