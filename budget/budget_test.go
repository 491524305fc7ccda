package budget

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/inferd/inferd/httperr"
)

func TestReserveAndRelease(t *testing.T) {
	set := metrics.NewSet()
	b := New(1000, 10*time.Millisecond, set)
	h, h1 := b.Hold(), b.Hold()
	if err := h.Reserve(600, "a body"); err != nil {
		t.Fatal(err)
	}
	if err := h1.Reserve(400, "another body"); err != nil {
		t.Fatal(err)
	}
	if h.Held() != 600 || b.Used() != 1000 {
		t.Fatalf("held %d, used %d: want 600, 1000", h.Held(), b.Used())
	}
	// Full: another request waits its 10 ms, then gets a 503 with a retry.
	h2 := b.Hold()
	err := h2.Reserve(1, "one byte")
	var be *httperr.Error
	if !errors.As(err, &be) || be.Status != 503 || be.RetryAfter <= 0 || !strings.Contains(be.Error(), "server.memory_limit") {
		t.Fatalf("reserve on a full budget: %v", err)
	}
	if h2.Held() != 0 {
		t.Fatalf("a failed reserve holds %d", h2.Held())
	}
	h.Release()
	h1.Release()
	if b.Used() != 0 || h.Held() != 0 {
		t.Fatalf("after release: used %d, held %d", b.Used(), h.Held())
	}
	if err := h2.Reserve(875, "7/8 of it"); err != nil {
		t.Fatalf("after release: %v", err)
	}
	h2.Release()
	if got := b.TakePeak(); got != 1000 {
		t.Errorf("peak %d, want 1000", got)
	}
	if got := b.TakePeak(); got != 0 {
		t.Errorf("peak after a quiet period %d, want 0", got)
	}
}

func TestTooLargeFailsAtOnce(t *testing.T) {
	b := New(1000, time.Hour, nil)
	h := b.Hold()
	start := time.Now()
	err := h.Reserve(876, "an 876-byte body")
	var be *httperr.Error
	if !errors.As(err, &be) || be.Status != 413 || !strings.Contains(err.Error(), "an 876-byte body needs 876 bytes") {
		t.Fatalf("over the whole budget: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("a request that can never fit waited %v", time.Since(start))
	}
}

// A reservation that does not fit now waits for memory that another
// request gives back within the wait.
func TestWaitsForRelease(t *testing.T) {
	b := New(100, 5*time.Second, nil)
	h := b.Hold()
	if err := h.Reserve(80, "x"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		h2 := b.Hold()
		err := h2.Reserve(50, "y")
		h2.Release()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("reserved on a full budget: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	h.Release()
	if err := <-done; err != nil {
		t.Fatalf("after the release: %v", err)
	}
}

// Large holds together take at most 7/8 of the budget: small requests
// still find room while large ones fill it.
func TestLargeHoldsLeaveRoomForSmall(t *testing.T) {
	b := New(64<<20, time.Millisecond, nil)
	var large []Hold
	for {
		h := b.Hold()
		if err := h.Reserve(5<<20, "a large body"); err != nil {
			break
		}
		large = append(large, h)
	}
	if got := int64(len(large)) * 5 << 20; got > b.MaxHold() {
		t.Fatalf("large holds took %d bytes, over the large share %d", got, b.MaxHold())
	}
	small := b.Hold()
	for range 7 {
		if err := small.Reserve(1<<20, "a small body"); err != nil && small.Held() < b.smallHold() {
			t.Fatalf("a small request with large ones at their share: %v", err)
		}
	}
	small.Release()
	for i := range large {
		large[i].Release()
	}
	if b.Used() != 0 {
		t.Fatalf("%d bytes left", b.Used())
	}
}

func TestZeroHoldReservesNothing(t *testing.T) {
	var h Hold
	if err := h.Reserve(1<<40, "anything"); err != nil || h.Held() != 0 {
		t.Fatalf("zero hold: %v, held %d", err, h.Held())
	}
	h.Release()
}

// Many requests reserving and releasing at once never exceed the budget
// and leave nothing reserved.
func TestConcurrentNeverExceeds(t *testing.T) {
	const limit = 1 << 20
	b := New(limit, 5*time.Millisecond, nil)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				h := b.Hold()
				if err := h.Reserve(int64(1+(g*7919+i*104729)%(limit/4)), "x"); err == nil {
					if err := h.Reserve(1+int64(g*31+i*17)%(b.smallHold()/2), "y"); err != nil && statusOf(err) != 503 {
						t.Errorf("second reserve: %v", err)
					}
					if u := b.Used(); u > limit {
						t.Errorf("used %d over the limit %d", u, limit)
					}
				}
				h.Release()
			}
		}()
	}
	wg.Wait()
	if u := b.Used(); u != 0 {
		t.Fatalf("%d bytes left reserved", u)
	}
}

func TestMetrics(t *testing.T) {
	set := metrics.NewSet()
	b := New(1000, time.Millisecond, set)
	h := b.Hold()
	h.Reserve(700, "x")
	h2 := b.Hold()
	h2.Reserve(400, "y")  // busy
	h2.Reserve(2000, "z") // too large
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, want := range []string{
		"inferd_memory_budget_bytes 1000",
		"inferd_memory_reserved_bytes 700",
		`inferd_memory_rejected_total{reason="busy"} 1`,
		`inferd_memory_rejected_total{reason="too_large"} 1`,
	} {
		if !strings.Contains(sb.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, sb.String())
		}
	}
	for name := range Help {
		if !strings.Contains(sb.String(), name) {
			t.Errorf("Help describes %s, which the set lacks", name)
		}
	}
	h.Release()
}

func TestDefaultLimit(t *testing.T) {
	if HostMemory() <= 0 {
		t.Skip("no /proc/meminfo here")
	}
	if l := DefaultLimit(); l < 64<<20 || l > HostMemory() {
		t.Errorf("default limit %d for a host of %d bytes", l, HostMemory())
	}
}

func statusOf(err error) int {
	var be *httperr.Error
	if errors.As(err, &be) {
		return be.Status
	}
	return 0
}

// Return gives back part of a hold, from the large share too.
func TestReturn(t *testing.T) {
	b := New(64<<20, time.Millisecond, nil)
	h := b.Hold()
	if err := h.Reserve(10<<20, "a large body"); err != nil {
		t.Fatal(err)
	}
	h.Return(4 << 20)
	if h.Held() != 6<<20 || b.Used() != 6<<20 {
		t.Fatalf("after returning 4 MiB of 10: held %d, used %d", h.Held(), b.Used())
	}
	// The large share has room for what was returned.
	h2 := b.Hold()
	if err := h2.Reserve(b.MaxHold()-(6<<20), "the rest of the large share"); err != nil {
		t.Fatalf("the large share after a return: %v", err)
	}
	h.Return(1 << 40)
	h2.Release()
	h.Release()
	if h.Held() != 0 || b.Used() != 0 {
		t.Fatalf("after all: held %d, used %d", h.Held(), b.Used())
	}
}
