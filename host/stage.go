package host

import (
	"runtime"
	"sync"
)

// stageParallelMin is the batch input size from which the runner spreads
// its copy over goroutines: below it, starting them costs more than the
// copy (a 224x224 float32 row is 602,112 bytes; at batch 64, 38.5 MB).
const stageParallelMin = 1 << 20

// stageChunkAlign keeps each goroutine's part on whole cache lines.
const stageChunkAlign = 64

// stage copies the pieces srcs one after another into dst, which is at
// least as long as all of them together: the runner's copy of a batch's
// rows into the lease. From stageParallelMin bytes on, the copy is split
// into one equal byte range per CPU (GOMAXPROCS, at most 8), each copied
// by its own goroutine; a range may cover parts of several pieces.
func stage(dst []byte, srcs [][]byte) {
	total := 0
	for _, s := range srcs {
		total += len(s)
	}
	workers := min(runtime.GOMAXPROCS(0), 8)
	if total < stageParallelMin || workers < 2 {
		off := 0
		for _, s := range srcs {
			off += copy(dst[off:], s)
		}
		return
	}
	chunk := (total/workers + stageChunkAlign - 1) / stageChunkAlign * stageChunkAlign
	var wg sync.WaitGroup
	for lo := 0; lo < total; lo += chunk {
		hi := min(lo+chunk, total)
		wg.Go(func() { copyRange(dst, srcs, lo, hi) })
	}
	wg.Wait()
}

// copyRange copies bytes [lo, hi) of the concatenation of srcs into the
// same range of dst.
func copyRange(dst []byte, srcs [][]byte, lo, hi int) {
	base := 0
	for _, s := range srcs {
		end := base + len(s)
		if end > lo && base < hi {
			from, to := max(lo, base), min(hi, end)
			copy(dst[from:to], s[from-base:to-base])
		}
		if end >= hi {
			return
		}
		base = end
	}
}
