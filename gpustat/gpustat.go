// Package gpustat puts GPU device telemetry on /metrics: per device, what
// Triton users watch (utilisation, memory used and total, power and its
// limit, energy, temperature, SM clock), read through NVML at scrape time.
//
// NVML is github.com/NVIDIA/go-nvml, which opens libnvidia-ml.so.1 at run
// time: a host without the NVIDIA driver runs the same binary, logs one
// "gpu telemetry off" line and has no GPU series.
//
// # Names
//
// The series are inferd_gpu_*, labelled gpu (NVML index, as nvidia-smi
// numbers them), uuid and name, in base units with the unit in the name:
// the house style, and what lets the dashboard and the alerts select them
// with the rest of job="inferd". Triton's and DCGM's names are not reused:
// their units differ (DCGM: percent, MiB, MHz, mJ), and a dcgm-exporter
// scraped by the same Prometheus would then share names with another
// meaning. A panel made for either ports by the name and a scale:
//
//	inferd_gpu_utilization_ratio     nv_gpu_utilization        DCGM_FI_DEV_GPU_UTIL / 100
//	inferd_gpu_memory_used_bytes     nv_gpu_memory_used_bytes  DCGM_FI_DEV_FB_USED * 2^20
//	inferd_gpu_memory_total_bytes    nv_gpu_memory_total_bytes (DCGM: FB_USED + FB_FREE + FB_RESERVED)
//	inferd_gpu_power_watts           nv_gpu_power_usage        DCGM_FI_DEV_POWER_USAGE
//	inferd_gpu_power_limit_watts     nv_gpu_power_limit        DCGM_FI_DEV_POWER_MGMT_LIMIT
//	inferd_gpu_energy_joules_total   nv_energy_consumption     DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION / 1000
//	inferd_gpu_temperature_celsius   -                         DCGM_FI_DEV_GPU_TEMP
//	inferd_gpu_sm_clock_hertz        -                         DCGM_FI_DEV_SM_CLOCK * 1e6
//
// # Reading
//
// The figures are read when /metrics is scraped, all devices in one NVML
// pass that later scrapes reuse for MaxAge (1 s): two Prometheus servers
// and a curl cost one pass. A device whose read fails is left out of that
// scrape (a debug line says why); a figure the device does not report
// (NVML's NOT_SUPPORTED: power on some boards, utilisation of a MIG
// parent) is left out for that device only. The series are written by a
// metrics writer on the set, not by gauge callbacks: a gauge is always
// exposed, so a lost device would show a stale value or NaN, and energy
// could only be typed gauge.
package gpustat

import (
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// MaxAge is how long one NVML pass serves scrapes. NVML's own counters
// move on a 1/6 s to 1 s period, so a shorter age would read the same
// values again.
const MaxAge = time.Second

// Device is what names a GPU in its series' labels.
type Device struct {
	Index int    // NVML index, as nvidia-smi numbers devices (not CUDA_VISIBLE_DEVICES)
	UUID  string // GPU-xxxxxxxx-..., stable across reboots and slots
	Name  string // the product, e.g. "NVIDIA H200"
}

// Reading is one device's figures at one time. A figure the device does
// not report is NaN and has no series.
type Reading struct {
	Utilization     float64 // fraction of the sample period with a kernel running, 0 to 1
	MemoryUsed      float64 // bytes
	MemoryTotal     float64 // bytes
	PowerWatts      float64
	PowerLimitWatts float64
	EnergyJoules    float64 // since the driver was loaded
	TemperatureC    float64
	SMClockHertz    float64
}

// Unknown returns a Reading with no figure.
func Unknown() Reading {
	n := math.NaN()
	return Reading{n, n, n, n, n, n, n, n}
}

// Source reads the devices: NVML on a host, a fixed table in a test.
type Source interface {
	// Devices lists the devices, read once when the source opens.
	Devices() []Device
	// Read returns the figures of Devices()[i]. An error leaves the
	// device out of this scrape.
	Read(i int) (Reading, error)
	// Close releases the source; Read is not called after it.
	Close() error
}

// Stats exposes the telemetry of one Source on a metrics set.
type Stats struct {
	src Source
	log *slog.Logger

	mu     sync.Mutex // held through an NVML pass: a concurrent scrape waits for it and reuses it
	closed bool
	at     time.Time // when text was read
	text   []byte    // the exposition of the pass at at
}

// family is one metric family: its name, type, help and the figure it
// takes from a Reading.
type family struct {
	name, typ, help string
	get             func(*Reading) float64
}

// families are the series, in the order written.
var families = []family{
	{"inferd_gpu_utilization_ratio", "gauge",
		"Fraction of NVML's last sample period (1/6 s to 1 s by product) in which a kernel ran on the GPU, 0 to 1 (nvidia-smi utilization.gpu / 100), by gpu index, uuid and name.",
		func(r *Reading) float64 { return r.Utilization }},
	{"inferd_gpu_memory_used_bytes", "gauge",
		"Device memory used by all processes, in bytes, the driver's reserve excluded (nvidia-smi memory.used).",
		func(r *Reading) float64 { return r.MemoryUsed }},
	{"inferd_gpu_memory_total_bytes", "gauge",
		"Device memory, in bytes (nvidia-smi memory.total).",
		func(r *Reading) float64 { return r.MemoryTotal }},
	{"inferd_gpu_power_watts", "gauge",
		"Power drawn by the board, in watts (nvidia-smi power.draw).",
		func(r *Reading) float64 { return r.PowerWatts }},
	{"inferd_gpu_power_limit_watts", "gauge",
		"Power limit the driver enforces, in watts (nvidia-smi power.limit).",
		func(r *Reading) float64 { return r.PowerLimitWatts }},
	{"inferd_gpu_energy_joules_total", "counter",
		"Energy used by the board since the driver was loaded, in joules; its rate is the mean power.",
		func(r *Reading) float64 { return r.EnergyJoules }},
	{"inferd_gpu_temperature_celsius", "gauge",
		"GPU core temperature, in degrees Celsius (nvidia-smi temperature.gpu).",
		func(r *Reading) float64 { return r.TemperatureC }},
	{"inferd_gpu_sm_clock_hertz", "gauge",
		"Current SM clock, in hertz (nvidia-smi clocks.sm, which is in MHz).",
		func(r *Reading) float64 { return r.SMClockHertz }},
}

// Register opens NVML and, when it finds a GPU, puts the devices' series on
// set; it logs one line either way. Without NVML (no driver, no
// libnvidia-ml, no device) it returns nil and set gains no series. Close
// the result to shut NVML down (a nil *Stats closes too).
func Register(set *metrics.Set, log *slog.Logger) *Stats {
	return register(set, log, openNVML)
}

// register is Register with the NVML opener chosen by the caller.
func register(set *metrics.Set, log *slog.Logger, open func(*slog.Logger) (Source, error)) *Stats {
	if log == nil {
		log = slog.Default()
	}
	start := time.Now()
	src, err := open(log)
	if err != nil {
		log.Info("gpu telemetry off: no GPU series on /metrics", "reason", err.Error())
		return nil
	}
	devs := src.Devices()
	names := make([]string, len(devs))
	for i, d := range devs {
		names[i] = strconv.Itoa(d.Index) + ": " + d.Name + " " + d.UUID
	}
	log.Info("gpu telemetry on", "devices", len(devs), "gpus", strings.Join(names, ", "),
		"took", time.Since(start).Round(time.Millisecond))
	return New(set, src, log)
}

// New exposes src's devices on set. The series are written after the
// set's own metrics, each family with its HELP and TYPE lines.
func New(set *metrics.Set, src Source, log *slog.Logger) *Stats {
	if log == nil {
		log = slog.Default()
	}
	s := &Stats{src: src, log: log}
	set.RegisterMetricsWriter(s.WritePrometheus)
	return s
}

// Close shuts the source down; the set's GPU series go with it.
func (s *Stats) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.src.Close()
}

// WritePrometheus writes the devices' series in the Prometheus text
// format, from a pass at most MaxAge old.
func (s *Stats) WritePrometheus(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if now := time.Now(); s.at.IsZero() || now.Sub(s.at) >= MaxAge {
		s.text = s.read(s.text[:0])
		s.at = now
	}
	w.Write(s.text)
}

// read does one NVML pass and returns its exposition appended to b.
func (s *Stats) read(b []byte) []byte {
	devs := s.src.Devices()
	readings := make([]Reading, len(devs))
	ok := make([]bool, len(devs))
	for i, d := range devs {
		r, err := s.src.Read(i)
		if err != nil {
			s.log.Debug("gpu telemetry: device left out of this scrape", "gpu", d.Index, "uuid", d.UUID, "err", err)
			continue
		}
		readings[i], ok[i] = r, true
	}
	labels := make([][]byte, len(devs))
	for i, d := range devs {
		labels[i] = deviceLabels(d)
	}
	for _, f := range families {
		head := false
		for i := range devs {
			if !ok[i] {
				continue
			}
			v := f.get(&readings[i])
			if math.IsNaN(v) {
				continue
			}
			if !head {
				b = append(b, "# HELP "+f.name+" "+f.help+"\n# TYPE "+f.name+" "+f.typ+"\n"...)
				head = true
			}
			b = append(b, f.name...)
			b = append(b, labels[i]...)
			b = append(b, ' ')
			b = appendValue(b, v)
			b = append(b, '\n')
		}
	}
	return b
}

// deviceLabels is `{gpu="0",uuid="...",name="..."}`.
func deviceLabels(d Device) []byte {
	b := []byte(`{gpu="`)
	b = strconv.AppendInt(b, int64(d.Index), 10)
	b = append(b, `",uuid="`...)
	b = appendLabelValue(b, d.UUID)
	b = append(b, `",name="`...)
	b = appendLabelValue(b, d.Name)
	return append(b, `"}`...)
}

// appendLabelValue escapes a label value as the text format wants:
// backslash, double quote and line feed.
func appendLabelValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendValue writes integers (bytes, hertz) without an exponent.
func appendValue(b []byte, v float64) []byte {
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
