//go:build unix

// Package cputime reads the CPU time the process has used, so that a
// benchmark can report what it cost in CPU whatever else the shared
// machine runs meanwhile (wall time alone is noisy there).
package cputime

import (
	"syscall"
	"time"
)

// Process is the CPU time the process has used so far, user and system,
// all threads; 0 where it cannot be read.
func Process() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
