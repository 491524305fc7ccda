package cluster

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// What the gateway costs: the same requests, in the same run, straight to
// a replica, through HAProxy without the gateway, through the gateway on
// plain HTTP (key lookup, model fence, rate limiting) and through the
// gateway over TLS (all of it). Closed loops: one client for the latency a
// request gains, eight for throughput; each configuration measured in
// turn, rounds in a rotated order, medians of the rounds.
//
// It runs only when $INFERD_GATEWAY_FIGURES names a file, where it writes
// its table (bench/results/gateway-*.md has one):
//
//	INFERD_GATEWAY_FIGURES=/tmp/gw.md go test -count=1 -run TestGatewayFigures -v -timeout 30m ./cluster/
//
// $INFERD_GATEWAY_MODEL=resnet50 measures ResNet50 classify (a 500x375
// JPEG) instead of the tiny model's binary infer;
// $INFERD_GATEWAY_ROUNDS (3) and $INFERD_GATEWAY_SECONDS (5) size the run.
func TestGatewayFigures(t *testing.T) {
	out := os.Getenv("INFERD_GATEWAY_FIGURES")
	if out == "" {
		t.Skip("figures: set INFERD_GATEWAY_FIGURES=FILE to measure the gateway's cost")
	}
	modelName := envOr("INFERD_GATEWAY_MODEL", "tiny")
	rounds, _ := strconv.Atoi(envOr("INFERD_GATEWAY_ROUNDS", "3"))
	secs, _ := strconv.ParseFloat(envOr("INFERD_GATEWAY_SECONDS", "5"), 64)
	d := time.Duration(secs * float64(time.Second))

	g := newGatewayOf(t, 1, modelName)
	plain := g.startHAProxy("haproxy-plain", false)
	g.waitReplicas(plain, 30*time.Second)
	// A rate limit that is looked up and counted but never reached.
	key := g.addKey("bench", "-models", "*", "-rate", "10000000")
	rep := "http://127.0.0.1:" + strconv.Itoa(g.replicas[0].port)

	plainClient := func() *http.Client {
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	}
	tlsClient := func() *http.Client {
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true,
			TLSClientConfig: &tls.Config{RootCAs: g.ca}}}
	}
	targets := []benchTarget{
		{name: "replica", what: "straight to the replica, HTTP", base: rep, client: plainClient},
		{name: "haproxy", what: "HAProxy, gateway off, HTTP", base: "http://127.0.0.1:" + strconv.Itoa(plain.plain), client: plainClient},
		{name: "gateway-http", what: "gateway: key, fence, rate limit; HTTP", base: "http://127.0.0.1:" + strconv.Itoa(g.hap.plain), key: key, client: plainClient},
		{name: "gateway-tls", what: "gateway over TLS 1.3 (HTTP/1.1)", base: g.url(""), key: key, client: tlsClient},
	}

	// The tiny model's binary infer (loadtest -endpoint infer-binary: a
	// 588 KiB tensor) and, to see the gateway's own cost apart from
	// HAProxy's handling of a large body, its classify of a small PNG.
	var reqs []reqSpec
	conc := []int{1, 8}
	if modelName == "resnet50" {
		reqs = []reqSpec{{path: "/v2/models/resnet50/classify", ctype: "image/jpeg", body: photo()}}
		conc = []int{1, 4}
	} else {
		reqs = []reqSpec{tinyBinaryInfer(t, rep), {path: "/v2/models/tiny/classify", ctype: "image/png", body: testImage()}}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d rounds of %s per configuration, request and client count; medians; %s.\n",
		rounds, d, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	for _, req := range reqs {
		for _, tg := range targets {
			if r := tg.run(req, 1, 20, 0); r.errors > 0 {
				t.Fatalf("%s: %d of 20 requests failed: %s", tg.name, r.errors, r.firstErr)
			}
		}
		results := map[string]map[int][]benchResult{}
		for _, c := range conc {
			for r := range rounds {
				for i := range targets {
					tg := targets[(i+r)%len(targets)]
					res := tg.run(req, c, 0, d)
					t.Logf("%s: round %d, %d client(s), %-12s %s", req.path, r+1, c, tg.name, res)
					if res.errors > 0 {
						t.Errorf("%s: %d errors, e.g. %s", tg.name, res.errors, res.firstErr)
					}
					if results[tg.name] == nil {
						results[tg.name] = map[int][]benchResult{}
					}
					results[tg.name][c] = append(results[tg.name][c], res)
				}
			}
		}
		writeTable(&b, req, conc, targets, results)
	}
	t.Log("\n" + b.String())
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeTable writes one request's medians and what the gateway adds.
func writeTable(b *strings.Builder, req reqSpec, conc []int, targets []benchTarget, results map[string]map[int][]benchResult) {
	med := func(name string, c int) benchResult { return median(results[name][c]) }
	fmt.Fprintf(b, "\n### %s\n\n", req.what())
	fmt.Fprintf(b, "| configuration | 1 client: p50 | p99 | req/s | %d clients: req/s | p50 | p99 | throughput vs HAProxy | vs replica |\n", conc[1])
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, tg := range targets {
		one, many := med(tg.name, conc[0]), med(tg.name, conc[1])
		fmt.Fprintf(b, "| %s | %s | %s | %.0f | %.0f | %s | %s | %.3f | %.3f |\n", tg.what,
			ms(one.p50), ms(one.p99), one.rps, many.rps, ms(many.p50), ms(many.p99),
			many.rps/med("haproxy", conc[1]).rps, many.rps/med("replica", conc[1]).rps)
	}
	fmt.Fprintf(b, "\nAdded (medians; 1 client, then %d clients):\n\n", conc[1])
	for _, pair := range [][2]string{{"gateway-http", "haproxy"}, {"gateway-tls", "haproxy"}, {"gateway-tls", "replica"}, {"haproxy", "replica"}} {
		a1, b1 := med(pair[0], conc[0]), med(pair[1], conc[0])
		an, bn := med(pair[0], conc[1]), med(pair[1], conc[1])
		fmt.Fprintf(b, "- %s over %s: p50 %+.3f ms, p99 %+.3f ms; p50 %+.3f ms, p99 %+.3f ms; throughput x%.3f\n",
			pair[0], pair[1], msf(a1.p50-b1.p50), msf(a1.p99-b1.p99), msf(an.p50-bn.p50), msf(an.p99-bn.p99), an.rps/bn.rps)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// reqSpec is the one request every configuration gets.
type reqSpec struct {
	path, ctype string
	body        []byte
	hdr         [][2]string
}

func (r reqSpec) what() string {
	return fmt.Sprintf("POST %s, %d-byte %s body", r.path, len(r.body), r.ctype)
}

// tinyBinaryInfer is loadtest's -endpoint infer-binary request for the
// model at base: one row of every input in the binary tensor extension,
// outputs asked for in binary.
func tinyBinaryInfer(t *testing.T, base string) reqSpec {
	var md struct {
		Inputs []struct {
			Name     string
			Datatype string
			Shape    []int64
		}
		Outputs []struct{ Name string }
	}
	if err := getJSON(base+"/v2/models/tiny", &md); err != nil {
		t.Fatal(err)
	}
	type in struct {
		Name       string         `json:"name"`
		Shape      []int64        `json:"shape"`
		Datatype   string         `json:"datatype"`
		Parameters map[string]int `json:"parameters"`
	}
	type out struct {
		Name       string          `json:"name"`
		Parameters map[string]bool `json:"parameters"`
	}
	var h struct {
		Inputs  []in  `json:"inputs"`
		Outputs []out `json:"outputs"`
	}
	var data []byte
	for _, i := range md.Inputs {
		if i.Datatype != "FP32" {
			t.Fatalf("tiny model input %s is %s: this builds FP32 rows only", i.Name, i.Datatype)
		}
		shape := slices.Clone(i.Shape)
		n := int64(1)
		for k := range shape {
			if shape[k] < 0 {
				shape[k] = 1
			}
			n *= shape[k]
		}
		row := make([]byte, 4*n)
		for k := range row {
			row[k] = byte(k * 7)
		}
		h.Inputs = append(h.Inputs, in{i.Name, shape, "FP32", map[string]int{"binary_data_size": len(row)}})
		data = append(data, row...)
	}
	for _, o := range md.Outputs {
		h.Outputs = append(h.Outputs, out{o.Name, map[string]bool{"binary_data": true}})
	}
	hj, _ := json.Marshal(h)
	return reqSpec{
		path: "/v2/models/tiny/infer", ctype: "application/octet-stream", body: append(hj, data...),
		hdr: [][2]string{{"Inference-Header-Content-Length", strconv.Itoa(len(hj))}},
	}
}

// photo is a 500x375 JPEG, the size of a typical ImageNet photo.
func photo() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 500, 375))
	for y := range 375 {
		for x := range 500 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var b bytes.Buffer
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	return b.Bytes()
}

type benchTarget struct {
	name, what, base, key string
	client                func() *http.Client
}

type benchResult struct {
	n, errors int
	rps       float64
	p50, p99  time.Duration
	firstErr  string
	took      time.Duration
}

func (r benchResult) String() string {
	return fmt.Sprintf("%d requests, %.0f/s, p50 %s p99 %s, %d errors", r.n, r.rps, ms(r.p50), ms(r.p99), r.errors)
}

// run sends req from c closed-loop clients, n requests in all or for d.
func (tg benchTarget) run(req reqSpec, c, n int, d time.Duration) benchResult {
	client := tg.client()
	defer client.CloseIdleConnections()
	var (
		mu    sync.Mutex
		lat   []time.Duration
		res   benchResult
		wg    sync.WaitGroup
		count int
	)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if n > 0 && count >= n || d > 0 && time.Since(start) >= d {
					mu.Unlock()
					return
				}
				count++
				mu.Unlock()
				r, _ := http.NewRequest("POST", tg.base+req.path, bytes.NewReader(req.body))
				r.Header.Set("Content-Type", req.ctype)
				for _, h := range req.hdr {
					r.Header.Set(h[0], h[1])
				}
				if tg.key != "" {
					r.Header.Set("Authorization", "Bearer "+tg.key)
				}
				t0 := time.Now()
				resp, err := client.Do(r)
				why := ""
				if err != nil {
					why = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						why = fmt.Sprintf("%d %.200s", resp.StatusCode, b)
					}
				}
				el := time.Since(t0)
				mu.Lock()
				if why != "" {
					res.errors++
					if res.firstErr == "" {
						res.firstErr = why
					}
				} else {
					lat = append(lat, el)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.took = time.Since(start)
	res.n = len(lat) + res.errors
	res.rps = float64(len(lat)) / res.took.Seconds()
	slices.Sort(lat)
	if len(lat) > 0 {
		res.p50 = lat[len(lat)/2]
		res.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res
}

// median is the median of each figure across rounds.
func median(rs []benchResult) benchResult {
	pick := func(f func(benchResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v) == 0 {
			return 0
		}
		return v[len(v)/2]
	}
	return benchResult{
		rps: pick(func(r benchResult) float64 { return r.rps }),
		p50: time.Duration(pick(func(r benchResult) float64 { return float64(r.p50) })),
		p99: time.Duration(pick(func(r benchResult) float64 { return float64(r.p99) })),
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", msf(d)) }
func msf(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
