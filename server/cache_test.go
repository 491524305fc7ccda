package server

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/internal/testbed"
	"github.com/inferd/inferd/kserve"
)

// cacheConfig serves the tiny model with a response cache.
func cacheConfig(maxBytes config.ByteSize, ttl time.Duration) *config.Config {
	return tinyConfig(func(c *config.Config) {
		c.Models[0].Cache = config.Cache{MaxBytes: maxBytes, TTL: ttl}
	})
}

func (ts *testServer) stats(t *testing.T) kserve.ModelStatistics {
	t.Helper()
	var s kserve.StatisticsResponse
	r := ts.do(t, "GET", "/v2/models/tiny/stats", "", nil)
	if r.code != 200 {
		t.Fatalf("stats: %d %s", r.code, r.body)
	}
	r.json(t, &s)
	return s.ModelStats[0]
}

// infer posts body (a binary request when hlen >= 0) with headers.
func (ts *testServer) infer(t *testing.T, body []byte, hlen int, headers ...string) response {
	t.Helper()
	if hlen >= 0 {
		headers = append(headers, headerInferenceLength, strconv.Itoa(hlen))
	}
	r := ts.do(t, "POST", "/v2/models/tiny/infer", "", body, headers...)
	if r.code != 200 {
		t.Fatalf("infer: %d %s", r.code, r.body)
	}
	return r
}

// A hit sends the very bytes a computed answer sends, for JSON and binary
// infer, with classification applied after the cache; it runs nothing,
// and Triton's cache_hit and cache_miss count it.
func TestCacheInferHitIsTheMiss(t *testing.T) {
	ts := start(t, cacheConfig(1<<20, 0))
	jsonBody := jsonInfer(1, floats(3*224*224, 0))
	binBody, hlen := binaryInfer(1, floats(3*224*224, 1), true)
	clsBody := []byte(strings.Replace(string(jsonInfer(1, floats(3*224*224, 2))), `"inputs"`,
		`"outputs":[{"name":"output","parameters":{"classification":3}}],"inputs"`, 1))
	for _, tc := range []struct {
		name string
		body []byte
		hlen int
	}{{"json", jsonBody, -1}, {"binary", binBody, hlen}, {"classification", clsBody, -1}} {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.stats(t)
			miss := ts.infer(t, tc.body, tc.hlen)
			hit := ts.infer(t, tc.body, tc.hlen)
			fresh := ts.infer(t, tc.body, tc.hlen, "Cache-Control", "max-age=0, No-Cache")
			for _, c := range []struct {
				r    response
				want string
			}{{miss, "miss"}, {hit, "hit"}, {fresh, "bypass"}} {
				if got := c.r.header.Get(headerCache); got != c.want {
					t.Errorf("%s: want %s", got, c.want)
				}
			}
			if !bytes.Equal(hit.body, miss.body) || !bytes.Equal(hit.body, fresh.body) {
				t.Fatalf("bodies differ:\nmiss   %.200q\nhit    %.200q\nbypass %.200q", miss.body, hit.body, fresh.body)
			}
			if miss.header.Get(headerInferenceLength) != hit.header.Get(headerInferenceLength) {
				t.Errorf("%s %q on the miss, %q on the hit", headerInferenceLength,
					miss.header.Get(headerInferenceLength), hit.header.Get(headerInferenceLength))
			}
			after := ts.stats(t)
			// The miss and the bypass ran; the hit did not.
			if d := after.ExecutionCount - before.ExecutionCount; d != 2 {
				t.Errorf("execution_count grew by %d, want 2 (the miss and the bypass)", d)
			}
			s0, s1 := before.InferenceStats, after.InferenceStats
			if s1.CacheHit.Count-s0.CacheHit.Count != 1 || s1.CacheMiss.Count-s0.CacheMiss.Count != 1 ||
				s1.CacheHit.Ns <= s0.CacheHit.Ns || s1.CacheMiss.Ns <= s0.CacheMiss.Ns {
				t.Errorf("cache_hit %+v -> %+v, cache_miss %+v -> %+v: want one more each, with time",
					s0.CacheHit, s1.CacheHit, s0.CacheMiss, s1.CacheMiss)
			}
			if s1.Success.Count-s0.Success.Count != 3 || s1.Queue.Count-s0.Queue.Count != 3 {
				t.Errorf("success grew by %d, queue by %d, want 3 each (Triton counts hits in both)",
					s1.Success.Count-s0.Success.Count, s1.Queue.Count-s0.Queue.Count)
			}
			if s1.ComputeInfer.Count-s0.ComputeInfer.Count != 2 || after.InferenceCount-before.InferenceCount != 2 {
				t.Errorf("compute_infer grew by %d, inference_count by %d, want 2 each (not the hit)",
					s1.ComputeInfer.Count-s0.ComputeInfer.Count, after.InferenceCount-before.InferenceCount)
			}
		})
	}
	// The same tensor sent as JSON and as binary is one entry: the
	// encoding applies after the cache.
	bin, hl := binaryInfer(1, floats(3*224*224, 0), false)
	if r := ts.infer(t, bin, hl); r.header.Get(headerCache) != "hit" {
		t.Errorf("the JSON request's tensor sent in binary: %s, want hit", r.header.Get(headerCache))
	}
}

// Inputs that differ in one byte never share an entry.
func TestCacheDistinctInputs(t *testing.T) {
	ts := start(t, cacheConfig(1<<20, 0))
	body, hlen := binaryInfer(1, floats(3*224*224, 3), true)
	a := ts.infer(t, body, hlen)
	changed := bytes.Clone(body)
	changed[hlen+3] ^= 0x40 // the first element's exponent
	b := ts.infer(t, changed, hlen)
	if a.header.Get(headerCache) != "miss" || b.header.Get(headerCache) != "miss" {
		t.Fatalf("%s then %s: want two misses", a.header.Get(headerCache), b.header.Get(headerCache))
	}
	if bytes.Equal(a.body, b.body) {
		t.Fatal("different inputs gave the same outputs: the test proves nothing")
	}
	if r := ts.infer(t, body, hlen); !bytes.Equal(r.body, a.body) || r.header.Get(headerCache) != "hit" {
		t.Fatal("the first input did not hit its own entry")
	}
}

// Concurrent identical misses run the model once: one miss, the rest hits,
// one execution and one inference.
func TestCacheConcurrentMissesComputeOnce(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Models[0].Cache.MaxBytes = 1 << 20
		c.Models[0].Batcher.MaxDelay = 20 * time.Millisecond // the leader waits: the others arrive meanwhile
	}))
	body, hlen := binaryInfer(1, floats(3*224*224, 4), true)
	before := ts.stats(t)
	const n = 16
	var wg sync.WaitGroup
	results := make([]response, n)
	for i := range n {
		wg.Go(func() { results[i] = ts.infer(t, body, hlen) })
	}
	wg.Wait()
	misses := 0
	for _, r := range results {
		if r.header.Get(headerCache) == "miss" {
			misses++
		}
		if !bytes.Equal(r.body, results[0].body) {
			t.Fatal("concurrent identical requests got different bodies")
		}
	}
	after := ts.stats(t)
	if misses != 1 || after.ExecutionCount-before.ExecutionCount != 1 || after.InferenceCount-before.InferenceCount != 1 {
		t.Fatalf("%d misses, %d executions, %d inferences: want 1 each",
			misses, after.ExecutionCount-before.ExecutionCount, after.InferenceCount-before.InferenceCount)
	}
}

// Classify, recognize and their multipart bodies share the image's entry;
// a hit skips the decode and the model, and top_k applies after it.
func TestCacheClassify(t *testing.T) {
	ts := start(t, cacheConfig(1<<20, 0))
	img := pngImage(t, 300, 200, 7)
	post := func(path, ct string, body []byte, headers ...string) response {
		t.Helper()
		r := ts.do(t, "POST", path, ct, body, headers...)
		if r.code != 200 {
			t.Fatalf("%s: %d %s", path, r.code, r.body)
		}
		return r
	}
	before := ts.stats(t)
	miss := post("/v2/models/tiny/classify", "image/png", img)
	hit := post("/v2/models/tiny/classify", "image/png", img)
	fresh := post("/v2/models/tiny/classify", "image/png", img, "Cache-Control", "no-store")
	if miss.header.Get(headerCache) != "miss" || hit.header.Get(headerCache) != "hit" || fresh.header.Get(headerCache) != "bypass" {
		t.Fatalf("headers %q %q %q: want miss hit bypass", miss.header.Get(headerCache), hit.header.Get(headerCache), fresh.header.Get(headerCache))
	}
	if !bytes.Equal(miss.body, hit.body) || !bytes.Equal(hit.body, fresh.body) {
		t.Fatalf("bodies differ:\n%s\n%s\n%s", miss.body, hit.body, fresh.body)
	}
	if d := ts.stats(t).ExecutionCount - before.ExecutionCount; d != 2 {
		t.Errorf("execution_count grew by %d, want 2", d)
	}
	var five, two classifyResponse
	miss.json(t, &five)
	top2 := post("/v2/models/tiny/classify?top_k=2", "image/png", img)
	top2.json(t, &two)
	if top2.header.Get(headerCache) != "hit" || len(two.Predictions) != 2 ||
		two.Predictions[0] != five.Predictions[0] || two.Predictions[1] != five.Predictions[1] {
		t.Errorf("top_k=2 %s %+v, want a hit with the first two of %+v", top2.header.Get(headerCache), two.Predictions, five.Predictions)
	}
	ct, mp := multipartImage(t, "image", img)
	if r := post("/recognize", ct, mp); r.header.Get(headerCache) != "hit" {
		t.Errorf("/recognize of the same image: %q, want hit", r.header.Get(headerCache))
	}
	if r := post("/v2/models/tiny/classify", "image/png", pngImage(t, 300, 200, 8)); r.header.Get(headerCache) != "miss" {
		t.Errorf("another image: %q, want miss", r.header.Get(headerCache))
	}
}

// An entry is computed again after its TTL.
func TestCacheTTL(t *testing.T) {
	ts := start(t, cacheConfig(1<<20, 50*time.Millisecond))
	body, hlen := binaryInfer(1, floats(3*224*224, 5), true)
	if r := ts.infer(t, body, hlen); r.header.Get(headerCache) != "miss" {
		t.Fatalf("first: %s", r.header.Get(headerCache))
	}
	deadline := time.Now().Add(10 * time.Second)
	for ts.infer(t, body, hlen).header.Get(headerCache) != "miss" {
		if time.Now().After(deadline) {
			t.Fatal("still hit 10s after a 50ms ttl")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The cache holds at most max_bytes, counts its evictions, and /metrics
// says so in series promtool accepts.
func TestCacheByteBound(t *testing.T) {
	// Weigh one entry, then allow four.
	probe := start(t, cacheConfig(1<<20, 0))
	body, hlen := binaryInfer(1, floats(3*224*224, 0), true)
	probe.infer(t, body, hlen)
	one := probe.model("tiny").Cache().Stats().Bytes
	max := config.ByteSize(4 * one)
	ts := start(t, cacheConfig(max, 0))
	for i := range 20 {
		body, hlen := binaryInfer(1, floats(3*224*224, float64(10+i)), true)
		ts.infer(t, body, hlen)
	}
	c := ts.model("tiny").Cache()
	c.CleanUp()
	s := c.Stats()
	if s.Bytes > int64(max) || s.Evictions == 0 || s.Entries > 4 {
		t.Fatalf("cache %+v with max_bytes %d: want bytes <= max and evictions", s, max)
	}
	text := metricsText(t, ts)
	for _, want := range []string{
		fmt.Sprintf(`inferd_cache_bytes{model="tiny"} %d`, s.Bytes),
		fmt.Sprintf(`inferd_cache_evictions_total{model="tiny",reason="size"} %d`, s.Evictions),
		`inferd_cache_requests_total{model="tiny",result="miss"} 20`,
		`inferd_cache_requests_total{model="tiny",result="hit"} 0`,
		`# HELP inferd_cache_bytes Bytes the response cache holds`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	promtool := testbed.Tool(t, "INFERD_PROMTOOL", "promtool-"+testbed.PrometheusVersion, "promtool", true)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// A model without a cache sends no header and computes every request.
func TestCacheOff(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	body, hlen := binaryInfer(1, floats(3*224*224, 0), true)
	before := ts.stats(t)
	for range 2 {
		if r := ts.infer(t, body, hlen); r.header.Get(headerCache) != "" {
			t.Fatalf("%s: %q without a cache", headerCache, r.header.Get(headerCache))
		}
	}
	if r := ts.do(t, "POST", "/v2/models/tiny/classify", "image/png", pngImage(t, 64, 64, 1)); r.header.Get(headerCache) != "" {
		t.Fatalf("classify: %s %q without a cache", headerCache, r.header.Get(headerCache))
	}
	after := ts.stats(t)
	if after.ExecutionCount-before.ExecutionCount != 3 || after.InferenceStats.CacheHit.Count+after.InferenceStats.CacheMiss.Count != 0 {
		t.Fatalf("stats %+v: want 3 executions and no cache counts", after)
	}
	if ts.model("tiny").Cache() != nil {
		t.Fatal("a cache without models[].cache.max_bytes")
	}
}

// models[].cache's mistakes are config errors naming the key.
func TestCacheConfigErrors(t *testing.T) {
	for yaml, want := range map[string]string{
		"max_bytes: -1":             `"-1" is not a size`,
		"max_bytes: 2TiB":           "models[0].cache.max_bytes 2199023255552 bytes: want 0 (off) to 1TiB",
		"max_bytes: 1MiB\nttl: -1s": "models[0].cache.ttl -1s: must be >= 0",
		"ttl: 1m":                   "models[0].cache.ttl 1m0s without cache.max_bytes",
		"max_bytes: lots":           `"lots" is not a size`,
		"max_byte: 1":               "field max_byte not found",
	} {
		_, err := config.Parse([]byte("models:\n  - name: m\n    cache:\n      " + strings.ReplaceAll(yaml, "\n", "\n      ") + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("cache {%s}: error %v, want %q", yaml, err, want)
		}
	}
	c, err := config.Parse([]byte("models:\n  - name: m\n    cache: {max_bytes: 64MiB, ttl: 5m}\n"))
	if err != nil || c.Models[0].Cache != (config.Cache{MaxBytes: 64 << 20, TTL: 5 * time.Minute}) {
		t.Fatalf("%+v %v", c, err)
	}
}

// A model whose queue refuses requests still answers its cache hits: the
// batcher is asked only on a miss, so overload costs the misses, not the
// hits.
func TestCacheHitsPassAFullQueue(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Models[0].Cache = config.Cache{MaxBytes: 1 << 20}
		c.Models[0].Batcher.QueueCapacity = 1
		c.Models[0].Batcher.MaxDelay = 200 * time.Millisecond
	}))
	cached := jsonInfer(1, floats(3*224*224, 0))
	ts.infer(t, cached, -1) // the miss that fills the cache
	refused := 0
	for round := 0; round < 5 && refused == 0; round++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 6 {
			miss := jsonInfer(1, floats(3*224*224, float64(100*round+i+1)))
			wg.Go(func() {
				r := ts.do(t, "POST", "/v2/models/tiny/infer", "", miss)
				if r.code == 503 {
					mu.Lock()
					refused++
					mu.Unlock()
				}
			})
			wg.Go(func() {
				r := ts.do(t, "POST", "/v2/models/tiny/infer", "", cached)
				if r.code != 200 || r.header.Get(headerCache) != "hit" {
					t.Errorf("a cached request while the queue is full: %d %s %s", r.code, r.header.Get(headerCache), r.body)
				}
			})
		}
		wg.Wait()
	}
	if refused == 0 {
		t.Fatal("the queue of capacity 1 refused no miss in 5 rounds of 6: the test proved nothing")
	}
}
