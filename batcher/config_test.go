package batcher

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func nop(*Batch) error { return nil }

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		// The zero Config is valid: every field defaults.
		{"zero", Config{}, ""},
		// Negative batch size names the field and the rule.
		{"max batch negative", Config{MaxBatchSize: -1}, "batcher: max_batch_size -1: must be >= 1"},
		// Absurd batch sizes are rejected as typos.
		{"max batch huge", Config{MaxBatchSize: 1 << 20}, "max_batch_size 1048576: must be <= 65536"},
		// Buckets must be ascending.
		{"buckets unsorted", Config{MaxBatchSize: 8, Buckets: []int{1, 4, 2, 8}}, "buckets [1 4 2 8]: must be strictly ascending"},
		// Duplicate buckets are not strictly ascending.
		{"buckets duplicate", Config{MaxBatchSize: 8, Buckets: []int{4, 4, 8}}, "strictly ascending"},
		// A zero bucket is meaningless.
		{"bucket zero", Config{MaxBatchSize: 8, Buckets: []int{0, 8}}, "entry 0 must be >= 1"},
		// The last bucket must be the batch size, or full batches have no bucket.
		{"buckets short", Config{MaxBatchSize: 64, Buckets: []int{8, 32}}, "last entry must equal max_batch_size 64"},
		// Buckets alone set MaxBatchSize to the last bucket.
		{"buckets only", Config{Buckets: []int{3, 7, 12}}, ""},
		{"max delay negative", Config{MaxDelay: -time.Millisecond}, "max_delay -1ms: must be >= 0"},
		{"latency target negative", Config{LatencyTarget: -1}, "latency_target -1ns: must be >= 0"},
		{"queue negative", Config{QueueCapacity: -5}, "queue_capacity -5: must be >= 1"},
		{"queue huge", Config{QueueCapacity: 1 << 30}, "queue_capacity 1073741824: must be <="},
		{"timeout negative", Config{DefaultTimeout: -time.Second}, "default_timeout -1s: must be > 0"},
		{"in flight negative", Config{InFlight: -2}, "in_flight -2: must be >= 1"},
		{"in flight huge", Config{InFlight: 5000}, "in_flight 5000: must be <= 1024"},
		{"priorities negative", Config{Priorities: -1}, "priorities -1: must be >= 1"},
		{"priorities huge", Config{Priorities: 100}, "priorities 100: must be <= 64"},
		// Run-time seeds: one per bucket, 0 for the ones not measured.
		{"bucket run times", Config{Buckets: []int{1, 2}, BucketRunTimes: []time.Duration{ms, 0}}, ""},
		{"bucket run times short", Config{Buckets: []int{1, 2, 4}, BucketRunTimes: []time.Duration{ms}},
			"batcher: bucket_run_times [1ms]: has 1 entries, want one per bucket of [1 2 4]"},
		// The default buckets count too.
		{"bucket run times for default buckets", Config{MaxBatchSize: 8, BucketRunTimes: []time.Duration{ms, ms}}, "want one per bucket of [1 2 4 8]"},
		{"bucket run time negative", Config{Buckets: []int{1, 2}, BucketRunTimes: []time.Duration{ms, -ms}}, "bucket_run_times [1ms -1ms]: entry -1ms must be >= 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := New("m", c.cfg, RunnerFunc(nop), nil)
			if c.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				b.Close(t.Context())
				return
			}
			if err == nil {
				b.Close(t.Context())
				t.Fatalf("New accepted %+v", c.cfg)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	cases := []struct {
		name  string
		model string
		r     Runner
		want  string
	}{
		// The model name is a metric label and must be present.
		{"empty name", "", RunnerFunc(nop), `name "": must be non-empty`},
		// Control characters would corrupt the metrics text.
		{"newline in name", "a\nb", RunnerFunc(nop), "without control characters"},
		// No runner, nothing to run.
		{"nil runner", "m", nil, "runner: must not be nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.model, Config{}, c.r, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cases := []struct {
		name string
		in   Config
		want Config
	}{
		// Everything defaults.
		{"zero", Config{}, Config{MaxBatchSize: 64, Buckets: []int{1, 2, 4, 8, 16, 32, 64}, QueueCapacity: 1024, DefaultTimeout: 30 * time.Second, InFlight: 1, Priorities: 2, AdmissionShare: 0.8}},
		// A batch size that is not a power of two is the last bucket.
		{"max 48", Config{MaxBatchSize: 48}, Config{MaxBatchSize: 48, Buckets: []int{1, 2, 4, 8, 16, 32, 48}, QueueCapacity: 1024, DefaultTimeout: 30 * time.Second, InFlight: 1, Priorities: 2, AdmissionShare: 0.8}},
		// Buckets without a batch size: the batch size is the last bucket.
		{"buckets", Config{Buckets: []int{3, 7, 12}}, Config{MaxBatchSize: 12, Buckets: []int{3, 7, 12}, QueueCapacity: 1024, DefaultTimeout: 30 * time.Second, InFlight: 1, Priorities: 2, AdmissionShare: 0.8}},
		// Set values are kept.
		{"explicit", Config{MaxBatchSize: 1, MaxDelay: ms, LatencyTarget: 9 * ms, QueueCapacity: 3, DefaultTimeout: time.Second, InFlight: 4, Priorities: 5, AdmissionShare: 1},
			Config{MaxBatchSize: 1, Buckets: []int{1}, MaxDelay: ms, LatencyTarget: 9 * ms, QueueCapacity: 3, DefaultTimeout: time.Second, InFlight: 4, Priorities: 5, AdmissionShare: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := New("m", c.in, RunnerFunc(nop), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close(t.Context())
			got := b.Config()
			if !slices.Equal(got.Buckets, c.want.Buckets) {
				t.Errorf("buckets %v, want %v", got.Buckets, c.want.Buckets)
			}
			got.Buckets, c.want.Buckets = nil, nil
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("config %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestConfigIsACopy(t *testing.T) {
	buckets := []int{2, 4}
	b, err := New("m", Config{Buckets: buckets}, RunnerFunc(nop), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(t.Context())
	buckets[0] = 3
	c := b.Config()
	c.Buckets[1] = 99
	if got := b.Config().Buckets; !slices.Equal(got, []int{2, 4}) {
		t.Fatalf("buckets changed under the batcher: %v", got)
	}
	seeds := []time.Duration{ms, 2 * ms}
	b2, err := New("m", Config{Buckets: buckets, BucketRunTimes: seeds}, RunnerFunc(nop), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close(t.Context())
	seeds[0] = time.Hour
	b2.Config().BucketRunTimes[1] = time.Hour
	if got := b2.Config().BucketRunTimes; !slices.Equal(got, []time.Duration{ms, 2 * ms}) {
		t.Fatalf("bucket run times changed under the batcher: %v", got)
	}
}
