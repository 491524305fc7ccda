//go:build !unix

package floorbench

import "time"

func cpuTime() time.Duration { return 0 }
