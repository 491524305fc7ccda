package gpustat

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/VictoriaMetrics/metrics"
)

// fakeH200 is one device as NVML returns it, in NVML's units; fail, when
// set, is what the named call returns instead.
type fakeH200 struct {
	uuid string
	fail map[string]nvml.Return
}

func (f *fakeH200) ret(call string) nvml.Return {
	if r, ok := f.fail[call]; ok {
		return r
	}
	return nvml.SUCCESS
}

func (f *fakeH200) device() *mock.Device {
	return &mock.Device{
		GetUUIDFunc: func() (string, nvml.Return) { return f.uuid, f.ret("uuid") },
		GetNameFunc: func() (string, nvml.Return) { return "NVIDIA H200", f.ret("name") },
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 87, Memory: 40}, f.ret("utilization")
		},
		GetMemoryInfo_v2Func: func() (nvml.Memory_v2, nvml.Return) {
			return nvml.Memory_v2{Total: 150754820096, Reserved: 600 << 20, Used: 40 << 30, Free: 150754820096 - 40<<30 - 600<<20}, f.ret("memory_v2")
		},
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			// v1 counts the reserve as used.
			return nvml.Memory{Total: 150754820096, Used: 40<<30 + 600<<20}, f.ret("memory")
		},
		GetPowerUsageFunc:             func() (uint32, nvml.Return) { return 512345, f.ret("power") },
		GetEnforcedPowerLimitFunc:     func() (uint32, nvml.Return) { return 700000, f.ret("limit") },
		GetTotalEnergyConsumptionFunc: func() (uint64, nvml.Return) { return 123456789, f.ret("energy") },
		GetTemperatureFunc: func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
			if s != nvml.TEMPERATURE_GPU {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return 45, f.ret("temperature")
		},
		GetClockInfoFunc: func(c nvml.ClockType) (uint32, nvml.Return) {
			if c != nvml.CLOCK_SM {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return 1980, f.ret("clock")
		},
	}
}

// fakeNVML is a library with these devices; init, count and handle fail
// as lib says; hasV2 is whether nvmlDeviceGetMemoryInfo_v2 is there.
type fakeNVML struct {
	devs      []*fakeH200
	lib       map[string]nvml.Return
	hasV2     bool
	shutdowns int
}

func (f *fakeNVML) iface() *mock.Interface {
	ret := func(call string) nvml.Return {
		if r, ok := f.lib[call]; ok {
			return r
		}
		return nvml.SUCCESS
	}
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return ret("init") },
		ShutdownFunc:       func() nvml.Return { f.shutdowns++; return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return len(f.devs), ret("count") },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if r := ret("handle" + string(rune('0'+i))); r != nvml.SUCCESS {
				return nil, r
			}
			return f.devs[i].device(), nvml.SUCCESS
		},
		ExtensionsFunc: func() nvml.ExtendedInterface {
			return &mock.ExtendedInterface{LookupSymbolFunc: func(name string) error {
				if name == "nvmlDeviceGetMemoryInfo_v2" && f.hasV2 {
					return nil
				}
				return errors.New("undefined symbol " + name)
			}}
		},
	}
}

func oneH200() *fakeNVML {
	return &fakeNVML{devs: []*fakeH200{{uuid: "GPU-aaaa"}}, hasV2: true}
}

// NVML's units become base units; the memory reserve is left out as
// nvidia-smi does when the driver has v2, counted as used when not.
func TestNVMLRead(t *testing.T) {
	for _, c := range []struct {
		name string
		lib  func(*fakeNVML)
		want Reading
	}{
		{"every figure", func(*fakeNVML) {}, h200},
		{"driver without memory v2", func(f *fakeNVML) { f.hasV2 = false }, with(h200, func(r *Reading) { r.MemoryUsed = 40<<30 + 600<<20 })},
		{"v2 listed but not supported", func(f *fakeNVML) { f.devs[0].fail = map[string]nvml.Return{"memory_v2": nvml.ERROR_NOT_SUPPORTED} },
			with(h200, func(r *Reading) { r.MemoryUsed = 40<<30 + 600<<20 })},
		// A board that reports no power or energy: those figures only go.
		{"no power", func(f *fakeNVML) {
			f.devs[0].fail = map[string]nvml.Return{"power": nvml.ERROR_NOT_SUPPORTED, "energy": nvml.ERROR_NOT_SUPPORTED, "limit": nvml.ERROR_NO_PERMISSION}
		}, with(h200, func(r *Reading) { r.PowerWatts, r.EnergyJoules, r.PowerLimitWatts = math.NaN(), math.NaN(), math.NaN() })},
		// A MIG parent has no utilisation.
		{"mig parent", func(f *fakeNVML) { f.devs[0].fail = map[string]nvml.Return{"utilization": nvml.ERROR_NOT_SUPPORTED} },
			with(h200, func(r *Reading) { r.Utilization = math.NaN() })},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := oneH200()
			c.lib(f)
			src, err := openLib(f.iface(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := src.Devices(); len(d) != 1 || d[0] != (Device{0, "GPU-aaaa", "NVIDIA H200"}) {
				t.Fatalf("devices %+v", d)
			}
			got, err := src.Read(0)
			if err != nil {
				t.Fatal(err)
			}
			if !same(got, c.want) {
				t.Errorf("read %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// A call that fails otherwise than "not supported" leaves the device out
// of the scrape, with a debug line; the next scrape tries again.
func TestNVMLDeviceLost(t *testing.T) {
	f := &fakeNVML{devs: []*fakeH200{{uuid: "GPU-aaaa"}, {uuid: "GPU-bbbb"}}, hasV2: true}
	src, err := openLib(f.iface(), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.devs[1].fail = map[string]nvml.Return{"temperature": nvml.ERROR_GPU_IS_LOST}
	if _, err := src.Read(1); err == nil || !errors.Is(err, nvml.ERROR_GPU_IS_LOST) || !strings.Contains(err.Error(), "temperature") {
		t.Fatalf("read of a lost GPU: %v", err)
	}
	var logs bytes.Buffer
	set := metrics.NewSet()
	s := New(set, src, logTo(&logs))
	text := scrape(set)
	if !strings.Contains(text, `uuid="GPU-aaaa"`) || strings.Contains(text, `uuid="GPU-bbbb"`) {
		t.Errorf("/metrics:\n%s", text)
	}
	if !strings.Contains(logs.String(), `gpu=1 uuid=GPU-bbbb err="temperature: `) {
		t.Errorf("debug line:\n%s", logs.String())
	}
	if err := s.Close(); err != nil || f.shutdowns != 1 {
		t.Errorf("close: %v, %d shutdowns", err, f.shutdowns)
	}
}

func TestNVMLOpen(t *testing.T) {
	for _, c := range []struct {
		name    string
		lib     func(*fakeNVML)
		is      error
		says    string
		devices int
		shut    int // shutdowns: NVML is left as found when it does not open
	}{
		{"no library", func(f *fakeNVML) { f.lib = map[string]nvml.Return{"init": nvml.ERROR_LIBRARY_NOT_FOUND} },
			ErrNoNVML, "libnvidia-ml.so.1 not found", 0, 0},
		{"no driver", func(f *fakeNVML) { f.lib = map[string]nvml.Return{"init": nvml.ERROR_DRIVER_NOT_LOADED} },
			ErrNoNVML, "kernel driver is not loaded", 0, 0},
		{"no permission", func(f *fakeNVML) { f.lib = map[string]nvml.Return{"init": nvml.ERROR_NO_PERMISSION} },
			ErrNoNVML, "/dev/nvidia*", 0, 0},
		{"count fails", func(f *fakeNVML) { f.lib = map[string]nvml.Return{"count": nvml.ERROR_UNKNOWN} },
			ErrNoNVML, "device count", 0, 1},
		{"no device", func(f *fakeNVML) { f.devs = nil }, ErrNoDevices, "0 listed", 0, 1},
		{"only device unreadable", func(f *fakeNVML) { f.lib = map[string]nvml.Return{"handle0": nvml.ERROR_NO_PERMISSION} },
			ErrNoDevices, "1 listed, none readable", 0, 1},
		{"one of two unreadable", func(f *fakeNVML) {
			f.devs = append(f.devs, &fakeH200{uuid: "GPU-bbbb", fail: map[string]nvml.Return{"uuid": nvml.ERROR_GPU_IS_LOST}})
		}, nil, "", 1, 0},
		// A name NVML does not give is not a reason to leave the device out.
		{"no name", func(f *fakeNVML) { f.devs[0].fail = map[string]nvml.Return{"name": nvml.ERROR_UNKNOWN} }, nil, "", 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := oneH200()
			c.lib(f)
			src, err := openLib(f.iface(), logTo(new(bytes.Buffer)))
			if c.is != nil {
				if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.says) {
					t.Errorf("error %v, want %v saying %q", err, c.is, c.says)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if n := len(src.Devices()); n != c.devices {
				t.Errorf("%d devices, want %d", n, c.devices)
			}
			if f.shutdowns != c.shut {
				t.Errorf("%d shutdowns, want %d", f.shutdowns, c.shut)
			}
		})
	}
}

func with(r Reading, f func(*Reading)) Reading {
	f(&r)
	return r
}

// same compares readings with NaN equal to NaN.
func same(a, b Reading) bool {
	x := []float64{a.Utilization, a.MemoryUsed, a.MemoryTotal, a.PowerWatts, a.PowerLimitWatts, a.EnergyJoules, a.TemperatureC, a.SMClockHertz}
	y := []float64{b.Utilization, b.MemoryUsed, b.MemoryTotal, b.PowerWatts, b.PowerLimitWatts, b.EnergyJoules, b.TemperatureC, b.SMClockHertz}
	for i := range x {
		if x[i] != y[i] && !(math.IsNaN(x[i]) && math.IsNaN(y[i])) {
			return false
		}
	}
	return true
}
