package testbed

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStatus returns a memory field of /proc/PID/status in bytes (VmRSS,
// VmHWM, RssFile, ...); pid 0 is this process. It returns 0 when the
// process is gone or the field is absent.
func ProcStatus(pid int, field string) int64 {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			if f := strings.Fields(v); len(f) > 0 { // "123456 kB"
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// ResetPeakRSS resets the VmHWM of process pid (0: this one) to its
// current RSS (clear_refs 5: root or the process's owner); false when the
// kernel refused.
func ResetPeakRSS(pid int) bool {
	path := "/proc/self/clear_refs"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/clear_refs", pid)
	}
	return os.WriteFile(path, []byte("5"), 0) == nil
}
