package gpustat

import "errors"

var (
	// ErrNoNVML is why a host has no GPU series: NVML would not start (no
	// driver, no libnvidia-ml, no access to the devices). The error that
	// wraps it says which, and what to change.
	ErrNoNVML = errors.New("nvml unavailable")
	// ErrNoDevices is NVML running with no GPU this process may read.
	ErrNoDevices = errors.New("nvml found no GPU")
)
