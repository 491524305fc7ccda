package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/internal/testbed"
	"github.com/inferd/inferd/web"
	"github.com/inferd/inferd/web/webtest"
)

// The page and its assets: types, validators, caching, gzip made once,
// HEAD, and no key needed for them (while the status needs one).
func TestUIFiles(t *testing.T) {
	ts := start(t, authConfig(t, nil))
	idx := web.Index()
	js, ok := web.Lookup("app.js")
	if !ok {
		t.Fatal(`web.Lookup("app.js"): none`)
	}

	r := ts.do(t, "GET", "/", "", nil)
	if r.code != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" || !bytes.Equal(r.body, idx.Body) {
		t.Fatalf("GET / without a key: %d %s %.80q", r.code, r.header.Get("Content-Type"), r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || r.header.Get("ETag") != idx.ETag || r.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("GET / headers: %v", r.header)
	}
	// The page names its assets with their versions, which may be cached
	// for good.
	if !bytes.Contains(idx.Body, []byte(`"/ui/app.js?v=`+js.Version+`"`)) {
		t.Errorf("index.html does not ask for /ui/app.js?v=%s", js.Version)
	}

	for _, c := range []struct {
		what, method, path string
		headers            []string
		code               int
		ctype, enc, cache  string
		body               []byte
		file               *web.File // gzipped in the body
	}{
		{"asset, versioned", "GET", "/ui/app.js?v=" + js.Version, nil, 200, "text/javascript; charset=utf-8", "", "public, max-age=31536000, immutable", js.Body, nil},
		{"asset, another version: revalidated", "GET", "/ui/app.js?v=0", nil, 200, "text/javascript; charset=utf-8", "", "no-cache", js.Body, nil},
		{"asset, gzip accepted", "GET", "/ui/app.js", []string{"Accept-Encoding", "br, gzip"}, 200, "text/javascript; charset=utf-8", "gzip", "no-cache", js.Gzip, js},
		{"page, gzip accepted", "GET", "/", []string{"Accept-Encoding", "gzip"}, 200, "text/html; charset=utf-8", "gzip", "no-cache", idx.Gzip, idx},
		{"asset, not modified", "GET", "/ui/app.js", []string{"If-None-Match", js.ETag}, 304, "", "", "no-cache", nil, nil},
		{"asset, not modified (the gzip tag, weak)", "GET", "/ui/app.js", []string{"If-None-Match", `"x", W/"` + js.Version + `-gz"`}, 304, "", "", "no-cache", nil, nil},
		{"asset, changed since", "GET", "/ui/app.js", []string{"If-None-Match", `"0123"`}, 200, "text/javascript; charset=utf-8", "", "no-cache", js.Body, nil},
		{"style sheet", "GET", "/ui/style.css", nil, 200, "text/css; charset=utf-8", "", "no-cache", nil, nil},
		{"icon", "GET", "/ui/icon.svg", nil, 200, "image/svg+xml", "", "no-cache", nil, nil},
		{"HEAD", "HEAD", "/", nil, 200, "text/html; charset=utf-8", "", "no-cache", []byte{}, nil},
	} {
		r := ts.do(t, c.method, c.path, "", nil, c.headers...)
		if r.code != c.code || r.header.Get("Content-Encoding") != c.enc || r.header.Get("Cache-Control") != c.cache ||
			c.ctype != "" && r.header.Get("Content-Type") != c.ctype || c.body != nil && !bytes.Equal(r.body, c.body) {
			t.Errorf("%s: %d, type %q, encoding %q, cache %q, %d bytes", c.what, r.code, r.header.Get("Content-Type"), r.header.Get("Content-Encoding"), r.header.Get("Cache-Control"), len(r.body))
		}
		if r.code == 200 && r.header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("%s: Vary %q", c.what, r.header.Get("Vary"))
		}
		if c.file != nil {
			zr, err := gzip.NewReader(bytes.NewReader(r.body))
			if err != nil {
				t.Fatalf("%s: %v", c.what, err)
			}
			if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, c.file.Body) {
				t.Errorf("%s: the gzipped body is not %s", c.what, c.file.Name)
			}
		}
	}
	// Gzip was worth it for the script.
	if len(js.Gzip) == 0 || len(js.Gzip) > len(js.Body)/2 {
		t.Errorf("app.js: %d bytes, gzipped %d", len(js.Body), len(js.Gzip))
	}

	ts.do(t, "GET", "/ui/nope.js", "", nil).wantError(t, 404, `no file "nope.js" under /ui/ (it has app.js, icon.svg, style.css)`)
	ts.do(t, "POST", "/", "text/plain", []byte("x")).wantError(t, 405, "method POST not allowed on /: use GET")
	// Only the page is open: the status and the API still need a key.
	ts.do(t, "GET", "/v2/ui/status", "", nil).wantError(t, 401, "missing API key")
	ts.do(t, "GET", "/index.html", "", nil).wantError(t, 401, "missing API key")
	if r := ts.do(t, "GET", "/v2/ui/status", "", nil, "Authorization", "Bearer "+keyB); r.code != 200 {
		t.Errorf("status with a key: %d %s", r.code, r.body)
	}
}

// uiStatus is the JSON of GET /v2/ui/status as the page reads it.
type uiStatusJSON struct {
	Replica       string
	Ready         bool
	WindowSeconds float64 `json:"window_seconds"`
	Models        []struct {
		Name       string
		Device     string
		Images     bool
		MaxBatch   int `json:"max_batch"`
		QueueDepth int `json:"queue_depth"`
		Requests   uint64
		Errors     uint64
		Rate       *float64
		ErrorRate  *float64 `json:"error_rate"`
		P50        *float64 `json:"p50_ms"`
		P99        *float64 `json:"p99_ms"`
		QueueMs    *float64 `json:"queue_ms"`
		ComputeMs  *float64 `json:"compute_ms"`
		MeanBatch  *float64 `json:"mean_batch"`
		BatchSizes []struct {
			Size  string
			Count uint64
		} `json:"batch_sizes"`
	}
}

// The status counts what the models did: a first poll since they loaded
// (no rates), the next over the window since it, errors apart, batches
// by size adding up to the batches run.
func TestUIStatus(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	img := pngImage(t, 32, 32, 3)
	status := func() uiStatusJSON {
		t.Helper()
		var st uiStatusJSON
		ts.do(t, "GET", "/v2/ui/status", "", nil).json(t, &st)
		if len(st.Models) != 1 || st.Models[0].Name != "tiny" {
			t.Fatalf("status models: %+v", st.Models)
		}
		return st
	}
	classify := func(n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if r := ts.do(t, "POST", "/v2/models/tiny/classify", "image/png", img); r.code != 200 {
					t.Errorf("classify: %d %s", r.code, r.body)
				}
			})
		}
		wg.Wait()
	}
	// Requests that do not run the model do not count.
	ts.do(t, "GET", "/v2/models/tiny", "", nil)
	classify(6)
	ts.do(t, "POST", "/v2/models/tiny/classify", "image/png", []byte("not an image")).wantError(t, 415, "")

	st := status()
	m := st.Models[0]
	if st.WindowSeconds != 0 || m.Rate != nil || m.Requests != 7 || m.Errors != 1 || !m.Images || m.Device != "cpu" || m.MaxBatch != 8 || st.Replica != ts.Replica() {
		t.Errorf("first poll: window %v, rate %v, requests %d, errors %d, %+v", st.WindowSeconds, m.Rate, m.Requests, m.Errors, m)
	}
	if m.P50 == nil || m.P99 == nil || *m.P50 <= 0 || *m.P99 < *m.P50 || m.ComputeMs == nil || m.QueueMs == nil || m.MeanBatch == nil || *m.MeanBatch < 1 {
		t.Errorf("first poll, since the models loaded: %+v", m)
	}
	batches := func(m uiStatusJSON) (n uint64, sizes []string) {
		for _, b := range m.Models[0].BatchSizes {
			n += b.Count
			sizes = append(sizes, b.Size)
		}
		return n, sizes
	}
	if n, sizes := batches(st); n == 0 || !slices.Equal(sizes, []string{"1", "2", "3-4", "5-8"}) || math.Abs(float64(n)**m.MeanBatch-6) > 0.01 {
		t.Errorf("batch sizes %+v: want sizes 1, 2, 3-4, 5-8 whose batches hold the 6 rows (mean %v)", m.BatchSizes, *m.MeanBatch)
	}

	classify(4)
	st = status()
	m = st.Models[0]
	if st.WindowSeconds <= 0 || st.WindowSeconds > 10 || m.Requests != 11 || m.Rate == nil || m.ErrorRate == nil || *m.ErrorRate != 0 {
		t.Fatalf("second poll: window %v, %+v", st.WindowSeconds, m)
	}
	if want := 4 / st.WindowSeconds; math.Abs(*m.Rate-want) > 0.01*want+0.001 {
		t.Errorf("rate %v, want 4 requests over %vs = %v", *m.Rate, st.WindowSeconds, want)
	}
	if n, _ := batches(st); n == 0 || math.Abs(float64(n)**m.MeanBatch-4) > 0.01 {
		t.Errorf("the window's batches %+v (mean %v) do not hold its 4 rows", m.BatchSizes, *m.MeanBatch)
	}
	// Nothing since, within the window: the same start, the same 4.
	st = status()
	if m = st.Models[0]; m.Rate == nil {
		t.Error("third poll: no rate")
	} else if math.Abs(*m.Rate*st.WindowSeconds-4) > 0.04 {
		t.Errorf("third poll: rate %v over %vs, want 4 requests", *m.Rate, st.WindowSeconds)
	}
}

// The window: the newest snapshot at least uiWindow old, else the oldest;
// none when the last poll is long gone; at most one snapshot a second.
func TestUIWindow(t *testing.T) {
	var u uiState
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	poll := func(d time.Duration) (time.Duration, bool) {
		base, ok := u.window(at(d), map[string]*uiCounters{})
		return base.at.Sub(t0), ok
	}
	steps := []struct {
		now      time.Duration
		base     time.Duration
		ok       bool
		comment  string
		snapshot int // snapshots kept after the poll
	}{
		{0, 0, false, "first poll: no base", 1},
		{500 * time.Millisecond, 0, true, "the oldest, though younger than the window", 1},
		{2 * time.Second, 0, true, "", 2},
		{4 * time.Second, 0, true, "", 3},
		{11 * time.Second, 0, true, "0 is over 10s old: the newest such", 4},
		{13 * time.Second, 2 * time.Second, true, "2s is the newest over 10s old; 0 dropped", 4},
		{60 * time.Second, 0, false, "the newest over 10s old is 47s old: over 3 windows, no base", 1},
		{61 * time.Second, 60 * time.Second, true, "a fresh start", 2},
	}
	for _, s := range steps {
		base, ok := poll(s.now)
		if ok != s.ok || ok && base != s.base || len(u.snaps) != s.snapshot {
			t.Errorf("poll at %v: base %v %v, %d kept; want %v %v, %d (%s)", s.now, base, ok, len(u.snaps), s.base, s.ok, s.snapshot, s.comment)
		}
	}
}

func TestBucketsQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, c := range []struct {
		what string
		b    buckets
		q    float64
		want float64
		ok   bool
	}{
		{"empty", nil, 0.5, 0, false},
		{"no observations", buckets{{1, 0}, {inf, 0}}, 0.5, 0, false},
		{"median at the first bound", buckets{{1, 10}, {2, 20}, {inf, 20}}, 0.5, 1, true},
		{"interpolated in the second bucket", buckets{{1, 10}, {2, 20}, {inf, 20}}, 0.99, 1.98, true},
		{"in the first bucket, from 0", buckets{{0.004, 4}, {inf, 4}}, 0.5, 0.002, true},
		{"in +Inf: the highest finite bound", buckets{{1, 5}, {inf, 10}}, 0.99, 1, true},
		{"empty buckets skipped", buckets{{1, 0}, {2, 0}, {4, 8}, {inf, 8}}, 0.5, 3, true},
	} {
		got, ok := c.b.quantile(c.q)
		if ok != c.ok || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: q%v = %v %v, want %v %v", c.what, c.q, got, ok, c.want, c.ok)
		}
	}
	var b buckets
	for _, le := range []float64{2, inf, 1, 2} {
		b.add(le, 1)
	}
	if !slices.Equal(b, buckets{{1, 1}, {2, 2}, {inf, 1}}) {
		t.Errorf("add: %v", b)
	}
	if d := (buckets{{1, 5}, {2, 9}}).minus(buckets{{1, 2}}); !slices.Equal(d, buckets{{1, 3}, {2, 9}}) {
		t.Errorf("minus: %v", d)
	}
	got := sizes(buckets{{1, 1}, {2, 3}, {4, 3}, {8, 7}, {inf, 7}})
	want := []uiBucket{{"1", 1}, {"2", 2}, {"3-4", 0}, {"5-8", 4}}
	if !slices.Equal(got, want) {
		t.Errorf("sizes: %v, want %v", got, want)
	}
	if got := sizes(buckets{{1, 1}, {inf, 3}}); !slices.Equal(got, []uiBucket{{"1", 1}, {">1", 2}}) {
		t.Errorf("sizes with +Inf: %v", got)
	}
}

func TestLabelValue(t *testing.T) {
	labels := []byte(`model="a\"b\\c",endpoint="classify",le="+Inf"`)
	for key, want := range map[string]string{"model": `a"b\c`, "endpoint": "classify", "le": "+Inf", "code": ""} {
		if got := labelValue(labels, key); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	name, l, v, ok := parseSample([]byte(`inferd_x_bucket{model="m",le="0.5"} 12` + "\n"))
	if !ok || name != "inferd_x_bucket" || string(l) != `model="m",le="0.5"` || v != 12 {
		t.Errorf("parseSample: %q %q %v %v", name, l, v, ok)
	}
}

// The gateway lets the page and its assets through without a key, by
// their exact paths only; the status and everything else still need one.
// HAProxy runs the shipped configs/haproxy.cfg with no replica behind it
// (no Consul), so a request it lets through gets its 503 "no replica",
// one it stops gets 401.
func TestGatewayServesThePage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts HAProxy (skipped under -short)")
	}
	hap := testbed.Tool(t, "INFERD_HAPROXY", "", "haproxy", true)
	root := testbed.RepoRoot()
	dir := t.TempDir()
	gw := filepath.Join(dir, "gateway")
	if err := os.Mkdir(gw, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"keys.map", "models.map", "rates.map", "concurrency.map"} {
		b, err := os.ReadFile(filepath.Join(root, "configs", "gateway", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(gw, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := testbed.FreePort(t, false)
	p := testbed.Start(t, dir, "haproxy", []string{
		"HAPROXY_PORT=" + strconv.Itoa(port),
		"HAPROXY_GATEWAY_DIR=" + gw,
		"HAPROXY_STATS_PORT=" + strconv.Itoa(testbed.FreePort(t, false)),
		"CONSUL_DNS_PORT=" + strconv.Itoa(testbed.FreePort(t, true)),
		"HAPROXY_RUN_DIR=" + dir,
	}, hap, "-db", "-f", filepath.Join(root, "configs", "haproxy.cfg"))
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if _, ok := testbed.WaitFor(10*time.Second, func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}); !ok {
		t.Fatalf("HAProxy did not listen:\n%s", p.Tail(20))
	}
	client := &http.Client{Timeout: 10 * time.Second}
	paths := []string{"/", "/?x=1"}
	for _, name := range web.Names() {
		paths = append(paths, web.Prefix+name, web.Prefix+name+"?v="+web.Index().Version)
	}
	for _, path := range paths {
		for _, method := range []string{"GET", "HEAD"} {
			if r := call(t, client, base, method, path, nil); r.code != 503 {
				t.Errorf("%s %s without a key: %d %s, want it through (503: no replica)", method, path, r.code, r.body)
			}
		}
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/v2/ui/status"}, {"POST", "/"}, {"GET", "/ui/"}, {"GET", "/ui/other.js"},
		{"GET", "/ui/app.js/x"}, {"GET", "/index.html"}, {"GET", "/v2"}, {"GET", "/metrics"},
	} {
		if r := call(t, client, base, c.method, c.path, nil); r.code != 401 {
			t.Errorf("%s %s without a key: %d %s, want 401", c.method, c.path, r.code, r.body)
		}
	}
	// The canonical-path rule still comes first.
	for _, path := range []string{"/ui/%61pp.js", "/ui/../v2/ui/status", "//ui/app.js"} {
		if r := call(t, client, base, "GET", path, nil); r.code != 400 {
			t.Errorf("GET %s: %d %s, want 400 (not canonical)", path, r.code, r.body)
		}
	}
}

// uiServer serves cfg on a TCP port of the loopback, for the browser;
// it returns the server and its base URL.
func uiServer(t *testing.T, cfg *config.Config) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, cfg, ln), "http://" + ln.Addr().String()
}

// uiPhoto is the photo the browser tests upload, the model that
// classifies it (on top of tiny), and the label it should get: the real
// classifier and a real photo when $INFERD_REALMODEL_DIR has them, else
// the tiny model with labels and a JPEG of the repository.
func uiPhoto(t *testing.T) (cfg *config.Config, model, photo, wantLabel string) {
	if dir := os.Getenv("INFERD_REALMODEL_DIR"); dir != "" {
		cfg = tinyConfig(func(c *config.Config) {
			c.Models = append(c.Models, config.Model{Name: "mobilenet", Options: gpu.Options{Device: "cpu"},
				Path: filepath.Join(dir, "mobilenetv2-12-int8.onnx"), Labels: filepath.Join(dir, "synset.txt"), Softmax: "auto"})
		})
		return cfg, "mobilenet", filepath.Join(dir, "images", "glow_dog_207.png"), "golden retriever"
	}
	labels := filepath.Join(t.TempDir(), "labels.txt")
	var lines []string
	for i := range 1000 {
		lines = append(lines, fmt.Sprintf("class %d", i))
	}
	if err := os.WriteFile(labels, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg = tinyConfig(func(c *config.Config) { c.Models[0].Labels = labels })
	return cfg, "tiny", filepath.Join(testbed.RepoRoot(), "preprocess", "testdata", "pil", "jpeg420_big.jpg"), ""
}

// screenshots is where the browser tests write the views' PNGs:
// $INFERD_UI_SCREENSHOTS (relative to the repository), "" for none.
func screenshots() string {
	d := os.Getenv("INFERD_UI_SCREENSHOTS")
	if d != "" && !filepath.IsAbs(d) {
		d = filepath.Join(testbed.RepoRoot(), d)
	}
	return d
}

// predictionsJS reads the labels and percentages the page shows.
const predictionsJS = `[...document.querySelectorAll('#predictions li')].map(li => [li.querySelector('.label').textContent, li.querySelector('.prob').textContent, li.querySelector('.bar span').style.width])`

// The page in a real browser: it loads with no console error, a photo
// shows the labels the API gives for it with the server's timing and
// replica, a file that is no image shows the server's error, and the
// status view's figures move when load runs.
func TestUIInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium (skipped under -short)")
	}
	needLibrary(t)
	webtest.Chromium(t)
	cfg, model, photo, wantLabel := uiPhoto(t)
	s, base := uiServer(t, cfg)
	shots := screenshots()
	b := webtest.Start(t, 1100, 760)

	b.Do(t, chromedp.Navigate(base+"/"))
	b.WaitFor(t, 10*time.Second, "the model menu", `document.querySelectorAll('#model option').length > 0`)
	if p := b.Problems(0); len(p) > 0 {
		t.Fatalf("loading the page: %q", p)
	}
	models := webtest.Eval[[]string](t, b, `[...document.querySelectorAll('#model option')].map(o => o.value)`)
	if !slices.Contains(models, model) || !slices.Contains(models, "tiny") {
		t.Fatalf("model menu %q, want %s and tiny", models, model)
	}

	// A photo: the labels of the API for the same bytes, with bars.
	img, err := os.ReadFile(photo)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	r := call(t, client, base, "POST", "/v2/models/"+model+"/classify?top_k=5", img)
	var api classifyResponse
	if err := json.Unmarshal([]byte(r.body), &api); err != nil || r.code != 200 {
		t.Fatalf("the API on the photo: %d %s", r.code, r.body)
	}
	if wantLabel != "" && api.Predictions[0].Label != wantLabel {
		t.Fatalf("the API calls %s %q, want %q", filepath.Base(photo), api.Predictions[0].Label, wantLabel)
	}
	seen := b.Messages()
	b.Do(t, chromedp.SetValue(chromedp.ID("model"), model), chromedp.SetUploadFiles(chromedp.ID("file"), []string{photo}))
	b.WaitFor(t, 10*time.Second, "5 predictions", `document.querySelectorAll('#predictions li').length === 5 && document.getElementById('timing').textContent !== ''`)
	shown := webtest.Eval[[][]string](t, b, predictionsJS)
	for i, p := range api.Predictions {
		pct := p.Probability * 100
		want := fmt.Sprintf("%.2f%%", pct)
		if pct >= 10 {
			want = fmt.Sprintf("%.1f%%", pct)
		}
		bar, err := strconv.ParseFloat(strings.TrimSuffix(shown[i][2], "%"), 64)
		if shown[i][0] != p.Label || shown[i][1] != want || err != nil || math.Abs(bar-pct) > 0.051 {
			t.Errorf("prediction %d: the page shows %q (label, figure, bar width), the API says %q %s", i, shown[i], p.Label, want)
		}
	}
	timing := webtest.Eval[string](t, b, `document.getElementById('timing').textContent`)
	if !regexp.MustCompile(`server: queue [0-9.]+ ms \+ compute [0-9.]+ ms · round trip [0-9.]+ ms · answered by `).MatchString(timing) || !strings.HasSuffix(timing, s.Replica()) {
		t.Errorf("timing line %q: want the server's queue and compute and replica %s", timing, s.Replica())
	}
	if webtest.Eval[bool](t, b, `document.getElementById('preview').hidden`) {
		t.Error("the photo's preview is hidden")
	}
	if p := b.Problems(seen); len(p) > 0 {
		t.Errorf("classifying the photo: %q", p)
	}
	if shots != "" {
		b.Screenshot(t, filepath.Join(shots, "ui-classify.png"))
	}

	// A file that is no image: the server's own words, and no labels.
	notImage := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notImage, []byte("these are notes, not a picture\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = call(t, client, base, "POST", "/v2/models/"+model+"/classify?top_k=5", []byte("these are notes, not a picture\n"), "Content-Type", "text/plain")
	var apiErr struct{ Error string }
	if err := json.Unmarshal([]byte(r.body), &apiErr); err != nil || r.code != 415 || apiErr.Error == "" {
		t.Fatalf("the API on a text file: %d %s", r.code, r.body)
	}
	seen = b.Messages()
	b.Do(t, chromedp.SetUploadFiles(chromedp.ID("file"), []string{notImage}))
	b.WaitFor(t, 10*time.Second, "the error", `!document.getElementById('error').hidden`)
	if got := webtest.Eval[string](t, b, `document.getElementById('error').textContent`); got != apiErr.Error {
		t.Errorf("the page says %q, the server %q", got, apiErr.Error)
	}
	if n := webtest.Eval[int](t, b, `document.querySelectorAll('#predictions li').length`); n != 0 {
		t.Errorf("%d predictions shown beside the error", n)
	}
	for _, p := range b.Problems(seen) {
		// The browser logs the failed request, as it should; nothing else.
		if !strings.Contains(p, "status of 415") {
			t.Errorf("sending a text file: %q", p)
		}
	}

	// The status view: figures move when load runs.
	seen = b.Messages()
	b.Do(t, chromedp.Evaluate[chromedp.Void](`location.hash = '#status'`))
	card := `document.querySelector('[data-model="tiny"]')`
	b.WaitFor(t, 10*time.Second, "the tiny model's card", card+` && `+card+`.querySelector('[data-field=requests]').textContent !== ''`)
	field := func(name string) string {
		return webtest.Eval[string](t, b, card+`.querySelector('[data-field=`+name+`]').textContent`)
	}
	before, _ := strconv.Atoi(field("requests"))
	if dev := webtest.Eval[string](t, b, card+`.querySelector('small').textContent`); !strings.HasPrefix(dev, "cpu · 1 session · max batch 8") {
		t.Errorf("the card says %q, want the device, sessions and max batch", dev)
	}
	load := pngImage(t, 64, 64, 9)
	var stop sync.WaitGroup
	loadFor := 3 * time.Second
	if shots != "" {
		loadFor = 20 * time.Second // a sparkline worth a picture
	}
	for range 4 {
		stop.Go(func() {
			for end := time.Now().Add(loadFor); time.Now().Before(end); {
				if r := call(t, client, base, "POST", "/v2/models/tiny/classify", load, "Content-Type", "image/png"); r.code != 200 {
					t.Errorf("load: %d %s", r.code, r.body)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	b.WaitFor(t, 15*time.Second, "the status to show the load",
		`parseFloat(`+card+`.querySelector('[data-field=rate]').textContent) > 0 && `+
			`+`+card+`.querySelector('[data-field=requests]').textContent > `+strconv.Itoa(before)+` && `+
			`parseFloat(`+card+`.querySelector('[data-field=p99]').textContent) > 0 && `+
			card+`.querySelectorAll('rect.hbar').length > 0 && `+card+`.querySelectorAll('polyline').length > 0`)
	if shots != "" {
		b.WaitFor(t, 25*time.Second, "a sparkline worth a picture", card+`.querySelector('polyline.p50').getAttribute('points').split(' ').length >= 8`)
		b.Screenshot(t, filepath.Join(shots, "ui-status.png"))
	}
	stop.Wait()
	if n := webtest.Eval[int](t, b, `document.querySelectorAll('#cards [data-model]').length`); n != len(models) {
		t.Errorf("%d cards for %d models", n, len(models))
	}
	t.Logf("tiny under load: %s req/s, p50 %s ms, p99 %s ms, %s rows/batch", field("rate"), field("p50"), field("p99"), field("batch"))
	if p := b.Problems(seen); len(p) > 0 {
		t.Errorf("the status view: %q", p)
	}
}

// With API keys on, the page asks for a key with the server's reason,
// works once one is typed, and keeps it across a reload.
func TestUIWithKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium (skipped under -short)")
	}
	needLibrary(t)
	webtest.Chromium(t)
	_, base := uiServer(t, authConfig(t, nil))
	b := webtest.Start(t, 1000, 700)
	keyForm := `!document.getElementById('key-form').hidden`
	reason := `document.getElementById('key-reason').textContent`

	b.Do(t, chromedp.Navigate(base+"/"))
	b.WaitFor(t, 10*time.Second, "the key field", keyForm)
	if got := webtest.Eval[string](t, b, reason); !strings.Contains(got, "missing API key") {
		t.Errorf("the key field says %q, want the server's reason", got)
	}
	// A wrong key: the server's reason again.
	b.Do(t, chromedp.SendKeys(chromedp.ID("key-input"), "inferd_not-a-key"), chromedp.Click(chromedp.CSS(`#key-form button[type=submit]`)))
	b.WaitFor(t, 10*time.Second, "the refusal of a wrong key", keyForm+` && `+reason+`.includes('unknown API key')`)

	b.Do(t, chromedp.SendKeys(chromedp.ID("key-input"), keyB), chromedp.Click(chromedp.CSS(`#key-form button[type=submit]`)))
	b.WaitFor(t, 10*time.Second, "the model menu", `document.querySelectorAll('#model option').length > 0 && !(`+keyForm+`)`)
	b.Do(t, chromedp.SetUploadFiles(chromedp.ID("file"), []string{filepath.Join(testbed.RepoRoot(), "preprocess", "testdata", "pil", "jpeg420.jpg")}))
	b.WaitFor(t, 10*time.Second, "predictions", `document.querySelectorAll('#predictions li').length === 5`)

	// Typed once: a reload uses the kept key.
	seen := b.Messages()
	b.Do(t, chromedp.Navigate("about:blank"), chromedp.Navigate(base+"/#status"))
	b.WaitFor(t, 10*time.Second, "the status", `document.querySelector('[data-model="tiny"]') !== null`)
	if webtest.Eval[bool](t, b, keyForm) {
		t.Error("the key field shows after a reload: the key was not kept")
	}
	if p := b.Problems(seen); len(p) > 0 {
		t.Errorf("after the reload: %q", p)
	}
	for _, p := range b.Problems(0) {
		if !strings.Contains(p, "status of 401") {
			t.Errorf("console: %q", p)
		}
	}
}
