package server

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// processMetrics are the Go runtime and process metrics under the names and
// types Prometheus's own client uses, so dashboards and promtool's linter
// take them as they are. Counters are brought up to date at each scrape.
type processMetrics struct {
	cpu     *vm.FloatCounter
	gc      *vm.Counter
	samples []metrics.Sample
}

var startTime = time.Now()

func newProcessMetrics(set *vm.Set) *processMetrics {
	p := &processMetrics{
		cpu:     set.NewFloatCounter("process_cpu_seconds_total"),
		gc:      set.NewCounter("go_gc_cycles_total"),
		samples: []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}},
	}
	set.NewGauge("go_goroutines", func() float64 { return float64(runtime.NumGoroutine()) })
	set.NewGauge("go_memstats_heap_alloc_bytes", func() float64 { return readMem("/memory/classes/heap/objects:bytes") })
	set.NewGauge("go_memstats_sys_bytes", func() float64 { return readMem("/memory/classes/total:bytes") })
	set.NewGauge("process_resident_memory_bytes", func() float64 { return statm(1) })
	set.NewGauge("process_virtual_memory_bytes", func() float64 { return statm(0) })
	set.NewGauge("process_start_time_seconds", func() float64 { return float64(startTime.UnixNano()) / 1e9 })
	set.NewGauge("process_open_fds", openFDs)
	return p
}

// update brings the counters to their current values.
func (p *processMetrics) update() {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		secs := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
		p.cpu.Set(secs)
	}
	metrics.Read(p.samples)
	if v := p.samples[0].Value; v.Kind() == metrics.KindUint64 {
		p.gc.Set(v.Uint64())
	}
}

func readMem(name string) float64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return float64(s[0].Value.Uint64())
}

// statm returns field i of /proc/self/statm in bytes (0 size, 1 resident).
func statm(i int) float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) <= i {
		return 0
	}
	n, _ := strconv.ParseFloat(f[i], 64)
	return n * float64(os.Getpagesize())
}

func openFDs() float64 {
	d, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return float64(len(d))
}
