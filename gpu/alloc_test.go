//go:build !race

package gpu

import (
	"testing"

	"github.com/inferd/inferd/model"
)

// A steady-state run allocates no tensor and no buffer: what remains are
// the small slices of OrtValue pointers onnxruntime_go builds per call (four
// allocations of a few words, per batch, not per request).
func TestRunAllocations(t *testing.T) {
	m := open(t, modelPath(t, model.Spec{Arch: "tiny"}), Options{MaxBatch: 4})
	allocs := testing.AllocsPerRun(20, func() {
		l, err := m.Acquire(3)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Run(); err != nil {
			t.Fatal(err)
		}
		l.Release()
	})
	if allocs > 4 {
		t.Errorf("Acquire+Run+Release allocates %v times, budget 4", allocs)
	}
}
