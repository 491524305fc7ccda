package budget

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"time"
)

// HostMemory returns the memory this process may use: the cgroup's limit
// (v2 memory.max, v1 memory.limit_in_bytes) when there is one, else the
// host's MemTotal; 0 when neither can be read.
func HostMemory() int64 {
	host := memTotal()
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		if err == nil && n > 0 && (host == 0 || n < host) {
			return n
		}
	}
	return host
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// runtimeLimit returns the Go soft memory limit in effect (GOMEMLIMIT or a
// debug.SetMemoryLimit), 0 when there is none.
func runtimeLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
}

// DefaultLimit is the request budget when server.memory_limit is not set:
// the Go soft memory limit when GOMEMLIMIT sets one, else a quarter of
// HostMemory (the rest is for models, the runtime and the host), at least
// 256 MiB; 1 GiB when the host's memory cannot be read.
func DefaultLimit() int64 {
	if l := runtimeLimit(); l > 0 {
		return max(l/2, 64<<20)
	}
	h := HostMemory()
	if h == 0 {
		return 1 << 30
	}
	return max(h/4, 256<<20)
}

// runtimeHeadroom is what the soft limit leaves the server's own heap above
// the request budget and what it held once models loaded: connection
// buffers, pools, pooled jobs. Small, so that garbage from a spike is
// collected before RSS passes the budget by much.
const runtimeHeadroom = 32 << 20

// FollowRuntime sets the Go runtime's soft memory limit to the request
// budget plus the heap the server holds now (call it once models are
// loaded) plus a fixed headroom, so that memory from a spike goes back to
// the OS instead of staying with the process. A limit set by GOMEMLIMIT is
// the operator's and is left alone. It returns the limit in effect.
func FollowRuntime(limit int64, heapInUse int64) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return runtimeLimit()
	}
	l := limit + heapInUse + runtimeHeadroom
	debug.SetMemoryLimit(l)
	return l
}

// minSpike is the smallest peak of reservations worth handing back to the
// OS at once.
const minSpike = 64 << 20

// Reclaim hands memory from a spike back to the OS: every interval, when
// the peak reserved since the last look was at least 64 MiB and what is
// reserved now is under a quarter of it, it runs debug.FreeOSMemory (a
// collection and a scavenge, a few milliseconds on a small heap). The
// runtime would return it too, but slowly: minutes at the pace of its
// background scavenger. Reclaim returns when ctx ends.
func (b *Budget) Reclaim(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p := b.TakePeak(); p >= minSpike && b.Used() < p/4 {
			debug.FreeOSMemory()
		}
	}
}
