package batcher

import (
	"bytes"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// Every metric family the batcher creates has a HELP text in Help.
func TestHelpCoversEveryMetric(t *testing.T) {
	set := metrics.NewSet()
	b, err := New("m", Config{}, RunnerFunc(func(*Batch) error { return nil }), set)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(t.Context())
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	seen := 0
	for _, line := range strings.Split(buf.String(), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && Help[base] != "" {
				name = base
			}
		}
		if Help[name] == "" {
			t.Errorf("metric %s has no entry in Help", name)
		}
		seen++
	}
	if seen == 0 {
		t.Fatal("the batcher wrote no metrics")
	}
}
