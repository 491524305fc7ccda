package gpustat

import (
	"fmt"
	"log/slog"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlSource reads the devices through NVML.
type nvmlSource struct {
	lib     nvml.Interface
	devs    []Device
	handles []nvml.Device
	// memV2 is whether the library has nvmlDeviceGetMemoryInfo_v2, whose
	// used memory leaves out the driver's reserve as nvidia-smi does
	// (drivers from R510); v1's counts it as used.
	memV2 bool
}

var _ Source = (*nvmlSource)(nil)

// openNVML opens the host's libnvidia-ml.so.1.
func openNVML(log *slog.Logger) (Source, error) { return openLib(nvml.New(), log) }

// openLib initialises lib once and reads who the devices are. A device
// whose handle or identity does not read is left out, with a debug line.
func openLib(lib nvml.Interface, log *slog.Logger) (*nvmlSource, error) {
	if log == nil {
		log = slog.Default()
	}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, initError(ret)
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		lib.Shutdown()
		return nil, fmt.Errorf("%w: device count: %w", ErrNoNVML, ret)
	}
	s := &nvmlSource{lib: lib}
	for i := range n {
		h, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			log.Debug("gpu telemetry: device left out", "gpu", i, "err", ret.Error())
			continue
		}
		uuid, ret := h.GetUUID()
		if ret != nvml.SUCCESS {
			log.Debug("gpu telemetry: device left out: no uuid", "gpu", i, "err", ret.Error())
			continue
		}
		name, ret := h.GetName()
		if ret != nvml.SUCCESS {
			name = "unknown"
		}
		s.devs = append(s.devs, Device{Index: i, UUID: uuid, Name: name})
		s.handles = append(s.handles, h)
	}
	if len(s.devs) == 0 {
		lib.Shutdown()
		return nil, fmt.Errorf("%w (%d listed, none readable)", ErrNoDevices, n)
	}
	s.memV2 = lib.Extensions().LookupSymbol("nvmlDeviceGetMemoryInfo_v2") == nil
	return s, nil
}

// initError says why nvmlInit failed and what would change it.
func initError(ret nvml.Return) error {
	hint := ""
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		hint = ": libnvidia-ml.so.1 not found: no NVIDIA driver on this host (in a container: the NVIDIA container toolkit with NVIDIA_DRIVER_CAPABILITIES including utility)"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		hint = ": the NVIDIA kernel driver is not loaded"
	case nvml.ERROR_NO_PERMISSION:
		hint = ": no permission to open /dev/nvidia*"
	case nvml.ERROR_LIB_RM_VERSION_MISMATCH:
		hint = ": libnvidia-ml does not match the loaded kernel driver (upgraded without a reboot?)"
	}
	return fmt.Errorf("%w: init: %w%s", ErrNoNVML, ret, hint)
}

func (s *nvmlSource) Devices() []Device { return s.devs }

// Read does one pass over device i: eight NVML calls, or fewer when one
// fails. A figure the device does not report stays NaN.
func (s *nvmlSource) Read(i int) (Reading, error) {
	h := s.handles[i]
	r := Unknown()
	if u, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
		r.Utilization = float64(u.Gpu) / 100
	} else if err := failed("utilization", ret); err != nil {
		return r, err
	}
	memory := false
	if s.memV2 {
		if m, ret := h.GetMemoryInfo_v2(); ret == nvml.SUCCESS {
			r.MemoryUsed, r.MemoryTotal, memory = float64(m.Used), float64(m.Total), true
		} else if err := failed("memory", ret); err != nil {
			return r, err
		}
	}
	if !memory {
		if m, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
			r.MemoryUsed, r.MemoryTotal = float64(m.Used), float64(m.Total)
		} else if err := failed("memory", ret); err != nil {
			return r, err
		}
	}
	if mw, ret := h.GetPowerUsage(); ret == nvml.SUCCESS {
		r.PowerWatts = float64(mw) / 1e3
	} else if err := failed("power", ret); err != nil {
		return r, err
	}
	if mw, ret := h.GetEnforcedPowerLimit(); ret == nvml.SUCCESS {
		r.PowerLimitWatts = float64(mw) / 1e3
	} else if err := failed("power limit", ret); err != nil {
		return r, err
	}
	if mj, ret := h.GetTotalEnergyConsumption(); ret == nvml.SUCCESS {
		r.EnergyJoules = float64(mj) / 1e3
	} else if err := failed("energy", ret); err != nil {
		return r, err
	}
	// nvmlDeviceGetTemperature is deprecated in NVML 13 for
	// nvmlDeviceGetTemperatureV (newer drivers only), but every driver has
	// it; go-nvml's V handle cannot be faked in a test.
	if c, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		r.TemperatureC = float64(c)
	} else if err := failed("temperature", ret); err != nil {
		return r, err
	}
	if mhz, ret := h.GetClockInfo(nvml.CLOCK_SM); ret == nvml.SUCCESS {
		r.SMClockHertz = float64(mhz) * 1e6
	} else if err := failed("sm clock", ret); err != nil {
		return r, err
	}
	return r, nil
}

// failed sorts an NVML return other than SUCCESS: nil when the device
// does not report the figure (not supported, not in this driver, not
// allowed), else the error that leaves the device out of the scrape.
func failed(what string, ret nvml.Return) error {
	switch ret {
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND, nvml.ERROR_NO_PERMISSION:
		return nil
	}
	return fmt.Errorf("%s: %w", what, ret)
}

// Close shuts NVML down.
func (s *nvmlSource) Close() error {
	if ret := s.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %w", ret)
	}
	return nil
}
