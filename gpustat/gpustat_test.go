package gpustat

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/VictoriaMetrics/metrics"

	"github.com/inferd/inferd/internal/testbed"
)

// fakeSource is a fixed table of devices and readings.
type fakeSource struct {
	mu       sync.Mutex
	devs     []Device
	readings []Reading
	errs     []error
	reads    int
	closed   int
}

var _ Source = (*fakeSource)(nil)

func (f *fakeSource) Devices() []Device { return f.devs }

func (f *fakeSource) Read(i int) (Reading, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.errs != nil && f.errs[i] != nil {
		return Reading{}, f.errs[i]
	}
	return f.readings[i], nil
}

func (f *fakeSource) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

func (f *fakeSource) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// h200 is a busy H200 as NVML would report it.
var h200 = Reading{
	Utilization:     0.87,
	MemoryUsed:      40 << 30,
	MemoryTotal:     150754820096,
	PowerWatts:      512.345,
	PowerLimitWatts: 700,
	EnergyJoules:    123456.789,
	TemperatureC:    45,
	SMClockHertz:    1.98e9,
}

// twoGPUs: an H200 with every figure, and a board with an awkward name
// that reports no power (NaN), as some PCIe boards do.
func twoGPUs() *fakeSource {
	idle := h200
	idle.Utilization, idle.MemoryUsed, idle.PowerWatts, idle.EnergyJoules = 0, 0, math.NaN(), math.NaN()
	return &fakeSource{
		devs: []Device{
			{Index: 0, UUID: "GPU-11111111-2222-3333-4444-555555555555", Name: "NVIDIA H200"},
			{Index: 1, UUID: "GPU-66666666-7777-8888-9999-000000000000", Name: `Odd "board" \ 1`},
		},
		readings: []Reading{h200, idle},
	}
}

// logTo returns a logger at debug level writing to buf.
func logTo(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func scrape(set *metrics.Set) string {
	var b bytes.Buffer
	set.WritePrometheus(&b)
	return b.String()
}

// The exposition is exact: every family once with its HELP and TYPE,
// values in base units, label values escaped, a figure a device lacks
// left out for that device only, energy a counter.
func TestExposition(t *testing.T) {
	set := metrics.NewSet()
	New(set, twoGPUs(), nil)
	const l0 = `{gpu="0",uuid="GPU-11111111-2222-3333-4444-555555555555",name="NVIDIA H200"}`
	const l1 = `{gpu="1",uuid="GPU-66666666-7777-8888-9999-000000000000",name="Odd \"board\" \\ 1"}`
	want := "" +
		"# HELP inferd_gpu_utilization_ratio " + families[0].help + "\n" +
		"# TYPE inferd_gpu_utilization_ratio gauge\n" +
		"inferd_gpu_utilization_ratio" + l0 + " 0.87\n" +
		"inferd_gpu_utilization_ratio" + l1 + " 0\n" +
		"# HELP inferd_gpu_memory_used_bytes " + families[1].help + "\n" +
		"# TYPE inferd_gpu_memory_used_bytes gauge\n" +
		"inferd_gpu_memory_used_bytes" + l0 + " 42949672960\n" +
		"inferd_gpu_memory_used_bytes" + l1 + " 0\n" +
		"# HELP inferd_gpu_memory_total_bytes " + families[2].help + "\n" +
		"# TYPE inferd_gpu_memory_total_bytes gauge\n" +
		"inferd_gpu_memory_total_bytes" + l0 + " 150754820096\n" +
		"inferd_gpu_memory_total_bytes" + l1 + " 150754820096\n" +
		"# HELP inferd_gpu_power_watts " + families[3].help + "\n" +
		"# TYPE inferd_gpu_power_watts gauge\n" +
		"inferd_gpu_power_watts" + l0 + " 512.345\n" +
		"# HELP inferd_gpu_power_limit_watts " + families[4].help + "\n" +
		"# TYPE inferd_gpu_power_limit_watts gauge\n" +
		"inferd_gpu_power_limit_watts" + l0 + " 700\n" +
		"inferd_gpu_power_limit_watts" + l1 + " 700\n" +
		"# HELP inferd_gpu_energy_joules_total " + families[5].help + "\n" +
		"# TYPE inferd_gpu_energy_joules_total counter\n" +
		"inferd_gpu_energy_joules_total" + l0 + " 123456.789\n" +
		"# HELP inferd_gpu_temperature_celsius " + families[6].help + "\n" +
		"# TYPE inferd_gpu_temperature_celsius gauge\n" +
		"inferd_gpu_temperature_celsius" + l0 + " 45\n" +
		"inferd_gpu_temperature_celsius" + l1 + " 45\n" +
		"# HELP inferd_gpu_sm_clock_hertz " + families[7].help + "\n" +
		"# TYPE inferd_gpu_sm_clock_hertz gauge\n" +
		"inferd_gpu_sm_clock_hertz" + l0 + " 1980000000\n" +
		"inferd_gpu_sm_clock_hertz" + l1 + " 1980000000\n"
	if got := scrape(set); got != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got, want)
	}
}

// Beside the set's own metrics, with HELP and TYPE lines as the server
// writes them, the whole text passes promtool's linter.
func TestPromtool(t *testing.T) {
	metrics.ExposeMetadata(true) // as server.New does
	set := metrics.NewSet()
	set.NewCounter(`inferd_http_requests_total{code="200"}`).Add(3)
	set.NewGauge("inferd_http_requests_in_flight", func() float64 { return 1 })
	New(set, twoGPUs(), nil)
	text := scrape(set)
	// The server fills in the set's bare "# HELP name" lines; do the same.
	text = strings.ReplaceAll(text, "# HELP inferd_http_requests_total\n", "# HELP inferd_http_requests_total Requests.\n")
	text = strings.ReplaceAll(text, "# HELP inferd_http_requests_in_flight\n", "# HELP inferd_http_requests_in_flight Requests now.\n")
	if !strings.Contains(text, `inferd_http_requests_total{code="200"} 3`) || !strings.Contains(text, "inferd_gpu_sm_clock_hertz{") {
		t.Fatalf("the set's and the GPU metrics are not both there:\n%s", text)
	}
	promtool := testbed.Tool(t, "INFERD_PROMTOOL", "promtool-"+testbed.PrometheusVersion, "promtool", true)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n%s", err, out, text)
	}
}

func TestDeviceErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		errs []error
		want []string // gpu label values with series
	}{
		// The device that fails is left out of the scrape; the other stays.
		{"one fails", []error{nil, errors.New("utilization: ERROR_GPU_IS_LOST")}, []string{"0"}},
		// Nothing readable: no family, not even HELP lines.
		{"all fail", []error{errors.New("lost"), errors.New("lost")}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			src := twoGPUs()
			src.errs = c.errs
			set := metrics.NewSet()
			New(set, src, logTo(&logs))
			text := scrape(set)
			for _, gpu := range []string{"0", "1"} {
				has := strings.Contains(text, `{gpu="`+gpu+`"`)
				if want := strings.Contains(strings.Join(c.want, " "), gpu); has != want {
					t.Errorf("gpu %s has series: %v, want %v\n%s", gpu, has, want, text)
				}
			}
			if c.want == nil && text != "" {
				t.Errorf("no device read, yet:\n%s", text)
			}
			failed := 0
			for _, e := range c.errs {
				if e != nil {
					failed++
				}
			}
			if n := strings.Count(logs.String(), "level=DEBUG msg=\"gpu telemetry: device left out of this scrape\""); n != failed {
				t.Errorf("%d debug lines, want %d:\n%s", n, failed, logs.String())
			}
		})
	}
}

// One NVML pass serves every scrape for MaxAge, concurrent ones included;
// the next after it reads again, with the new values.
func TestOnePassPerMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := twoGPUs()
		set := metrics.NewSet()
		New(set, src, nil)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { scrape(set) })
		}
		wg.Wait()
		if n := src.readCount(); n != 2 {
			t.Fatalf("8 concurrent scrapes read the devices %d times, want 2 (one pass)", n)
		}
		time.Sleep(MaxAge - time.Millisecond)
		src.mu.Lock()
		src.readings[0].TemperatureC = 61
		src.mu.Unlock()
		if text := scrape(set); src.readCount() != 2 || !strings.Contains(text, `NVIDIA H200"} 45`) {
			t.Fatalf("a scrape inside MaxAge read again (%d reads) or has a new value:\n%s", src.readCount(), text)
		}
		time.Sleep(time.Millisecond)
		if text := scrape(set); src.readCount() != 4 || !strings.Contains(text, `inferd_gpu_temperature_celsius{gpu="0",uuid="GPU-11111111-2222-3333-4444-555555555555",name="NVIDIA H200"} 61`) {
			t.Fatalf("a scrape after MaxAge: %d reads, want 4; text:\n%s", src.readCount(), text)
		}
	})
}

func TestClose(t *testing.T) {
	src := twoGPUs()
	set := metrics.NewSet()
	s := New(set, src, nil)
	if !strings.Contains(scrape(set), "inferd_gpu_") {
		t.Fatal("no GPU series before Close")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if text := scrape(set); text != "" {
		t.Errorf("series after Close:\n%s", text)
	}
	if src.closed != 1 {
		t.Errorf("source closed %d times, want 1", src.closed)
	}
	var none *Stats
	if err := none.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
}

// Without libnvidia-ml: one info line that says why and what to change, no
// series, no panic, and a nil *Stats that closes.
func TestRegisterWithoutLibrary(t *testing.T) {
	var logs bytes.Buffer
	set := metrics.NewSet()
	set.NewCounter("inferd_other_total").Inc()
	s := register(set, logTo(&logs), func(log *slog.Logger) (Source, error) {
		return openLib(nvml.New(nvml.WithLibraryPath("/nonexistent/libnvidia-ml.so.1")), log)
	})
	if s != nil {
		t.Fatal("telemetry on without a library")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO msg=\"gpu telemetry off") ||
		!strings.Contains(lines[0], "ERROR_LIBRARY_NOT_FOUND") || !strings.Contains(lines[0], "no NVIDIA driver on this host") {
		t.Errorf("log, want one info line saying the library is missing:\n%s", logs.String())
	}
	if text := scrape(set); strings.Contains(text, "gpu") || !strings.Contains(text, "inferd_other_total 1") {
		t.Errorf("/metrics:\n%s", text)
	}
}

// The host's own NVML, as the binary opens it: here (no driver) off with
// one line; on a GPU host, on with every figure of every device sane.
func TestRegisterHost(t *testing.T) {
	var logs bytes.Buffer
	set := metrics.NewSet()
	s := Register(set, logTo(&logs))
	defer s.Close()
	t.Logf("log: %s", strings.TrimSpace(logs.String()))
	text := scrape(set)
	if s == nil {
		if !strings.Contains(logs.String(), "gpu telemetry off") || text != "" {
			t.Errorf("off, yet log %q and /metrics %q", logs.String(), text)
		}
		return
	}
	t.Logf("/metrics:\n%s", text)
	for i, d := range s.src.Devices() {
		r, err := s.src.Read(i)
		if err != nil {
			t.Errorf("gpu %d: %v", d.Index, err)
			continue
		}
		t.Logf("gpu %d %s: %+v", d.Index, d.Name, r)
		if !(r.MemoryTotal > 1<<30) || !(r.MemoryUsed <= r.MemoryTotal) || !(r.Utilization >= 0 && r.Utilization <= 1) ||
			!(r.TemperatureC > 0 && r.TemperatureC < 120) || !(r.SMClockHertz > 1e8) {
			t.Errorf("gpu %d: implausible %+v", d.Index, r)
		}
	}
	if !strings.Contains(text, "inferd_gpu_memory_total_bytes{gpu=") {
		t.Errorf("on, yet no memory series:\n%s", text)
	}
}

// The dashboard's GPU row queries every family (cluster's TestDashboard
// checks its queries as PromQL).
func TestDashboardHasEveryFamily(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "configs", "grafana", "inferd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !bytes.Contains(b, []byte(f.name+`{job=\"inferd\"}`)) {
			t.Errorf("no dashboard panel queries %s", f.name)
		}
	}
}
