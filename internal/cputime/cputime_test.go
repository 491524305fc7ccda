package cputime

import (
	"runtime"
	"testing"
	"time"
)

func TestProcessGrowsWithWork(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("not measured here")
	}
	before := Process()
	x := 0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		x++ // spin: CPU time, not sleep
	}
	if got := Process() - before; got < 10*time.Millisecond {
		t.Errorf("50ms of spinning used %s of CPU time (x=%d)", got, x)
	}
}
