//go:build !unix

// Package cputime reads the CPU time the process has used, so that a
// benchmark can report what it cost in CPU whatever else the shared
// machine runs meanwhile (wall time alone is noisy there).
package cputime

import "time"

// Process is not measured on this platform: it returns 0.
func Process() time.Duration { return 0 }
