package server

import (
	"bytes"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/web"
)

// The web page (package web) and the status its live view polls:
//
//	GET /            the page, without a key: it holds no secret
//	GET /ui/NAME     its script, style sheet and icon, without a key
//	GET /v2/ui/status per model: request rate, p50/p99, mean batch size,
//	                 queue depth, device, batch-size histogram (auth: as
//	                 every other route)

// servePage serves GET / : index.html, revalidated on every load (its
// ETag), so a new binary's page is seen at once.
func (s *Server) servePage(ctx *fasthttp.RequestCtx) {
	f := web.Index()
	ctx.Response.Header.Set("Content-Security-Policy", web.ContentSecurityPolicy)
	ctx.Response.Header.Set("Referrer-Policy", "no-referrer")
	serveFile(ctx, f, "no-cache")
}

// serveAsset serves GET /ui/NAME. The page asks for NAME?v=VERSION, which
// may be cached for good; any other URL of it is revalidated.
func (s *Server) serveAsset(ctx *fasthttp.RequestCtx, name []byte) {
	f, ok := web.Lookup(string(name))
	if !ok {
		writeError(ctx, httperr.Errorf(http.StatusNotFound, "no file %q under %s (it has %s)", name, web.Prefix, strings.Join(web.Names(), ", ")))
		return
	}
	cache := "no-cache"
	if string(ctx.QueryArgs().Peek("v")) == f.Version {
		cache = "public, max-age=31536000, immutable"
	}
	serveFile(ctx, f, cache)
}

// serveFile answers with f: 304 when If-None-Match names it, its gzipped
// copy when the client accepts gzip (compressed once, at startup).
func serveFile(ctx *fasthttp.RequestCtx, f *web.File, cacheControl string) {
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderCacheControl, cacheControl)
	h.Set(fasthttp.HeaderVary, fasthttp.HeaderAcceptEncoding)
	h.Set("X-Content-Type-Options", "nosniff")
	gz := f.Gzip != nil && acceptedCoding(ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding)) == "gzip"
	etag := f.ETag
	if gz {
		// Another representation, another strong validator.
		etag = `"` + f.Version + `-gz"`
	}
	h.Set(fasthttp.HeaderETag, etag)
	if etagMatch(ctx.Request.Header.Peek(fasthttp.HeaderIfNoneMatch), f.Version) {
		ctx.SetStatusCode(http.StatusNotModified)
		return
	}
	h.SetContentType(f.ContentType)
	if gz {
		h.SetContentEncoding("gzip")
		ctx.Response.SetBodyRaw(f.Gzip)
		return
	}
	ctx.Response.SetBodyRaw(f.Body)
}

// etagMatch reports whether an If-None-Match value names a representation
// of the file of this version: "*", or a tag, weak or strong, of either
// encoding (RFC 9110 13.1.2 compares weakly).
func etagMatch(h []byte, version string) bool {
	for tag := range strings.SplitSeq(string(h), ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == `"`+version+`"` || tag == `"`+version+`-gz"` {
			return true
		}
	}
	return false
}

// uiWindow is the span the status's rates, quantiles and histograms cover:
// the counters now against those of a poll at least this old.
const uiWindow = 10 * time.Second

// uiSnapshotEvery is the least time between two kept snapshots, whoever
// polls: a page every 2 s keeps about uiWindow/2 of them.
const uiSnapshotEvery = time.Second

// uiState keeps the counters of recent status polls, so that a poll is
// answered with what happened since one about uiWindow ago. It is filled
// by the polls themselves: no goroutine, no cost when nobody looks. The
// zero value is ready.
type uiState struct {
	mu    sync.Mutex
	snaps []uiSnapshot // oldest first
}

type uiSnapshot struct {
	at     time.Time
	models map[string]*uiCounters
}

// window returns the snapshot to measure cur, taken at now, against: the
// newest at least uiWindow old, else the oldest (a page that just opened),
// and false when there is none or it is over 3 windows old (nobody polled
// for a while: figures over minutes would mislead). It keeps cur unless a
// snapshot was kept less than uiSnapshotEvery before, and drops those
// older than the one returned.
func (u *uiState) window(now time.Time, cur map[string]*uiCounters) (uiSnapshot, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	i := -1 // the base
	for j, sn := range u.snaps {
		if now.Sub(sn.at) >= uiWindow {
			i = j
		}
	}
	if i < 0 && len(u.snaps) > 0 {
		i = 0
	}
	var base uiSnapshot
	ok := i >= 0 && now.Sub(u.snaps[i].at) <= 3*uiWindow && now.After(u.snaps[i].at)
	if ok {
		base = u.snaps[i]
	}
	if i > 0 {
		u.snaps = slices.Delete(u.snaps, 0, i)
	}
	if !ok {
		u.snaps = u.snaps[:0]
	}
	if n := len(u.snaps); n == 0 || now.Sub(u.snaps[n-1].at) >= uiSnapshotEvery {
		u.snaps = append(u.snaps, uiSnapshot{at: now, models: cur})
	}
	return base, ok
}

// uiCounters are one model's cumulative counters, read from the server's
// metrics set: what /metrics exports, summed over the endpoints that run
// the model.
type uiCounters struct {
	requests, errors     float64 // answered; of them not 2xx
	latency              buckets // seconds, 2xx answers only
	batches              buckets // rows per batch run
	batchSum, batchCount float64
	queueSum, queueCount float64 // seconds a request waited in the queue
	runSum, runCount     float64 // seconds a batch ran
}

// buckets are a cumulative histogram: counts by upper bound, ascending.
type buckets []bucket

type bucket struct{ le, count float64 }

// add adds n to the bucket le, inserted in order when new.
func (b *buckets) add(le, n float64) {
	i, found := slices.BinarySearchFunc(*b, le, func(x bucket, le float64) int {
		switch {
		case x.le < le:
			return -1
		case x.le > le:
			return 1
		}
		return 0
	})
	if !found {
		*b = slices.Insert(*b, i, bucket{le: le})
	}
	(*b)[i].count += n
}

// minus is b less base, bound by bound; a bound base lacks counts from 0.
func (b buckets) minus(base buckets) buckets {
	out := make(buckets, len(b))
	for i, x := range b {
		out[i] = x
		for _, y := range base {
			if y.le == x.le {
				out[i].count -= y.count
			}
		}
	}
	return out
}

// quantile estimates the q-quantile as Prometheus's histogram_quantile
// does: linearly within the bucket that holds it, the lowest bucket from
// 0, and the highest finite bound when it falls in +Inf. False when the
// histogram is empty.
func (b buckets) quantile(q float64) (float64, bool) {
	if len(b) == 0 || b[len(b)-1].count <= 0 {
		return 0, false
	}
	rank := q * b[len(b)-1].count
	lo, below := 0.0, 0.0
	for _, x := range b {
		if x.count >= rank && x.count > below {
			if math.IsInf(x.le, 1) {
				return lo, true
			}
			return lo + (x.le-lo)*(rank-below)/(x.count-below), true
		}
		lo, below = x.le, x.count
	}
	return lo, true
}

// Metric names the status reads (metrics.go, batcher/metrics.go).
const (
	mRequests   = "inferd_http_requests_total"
	mDuration   = "inferd_http_request_duration_seconds_bucket"
	mBatchSize  = "inferd_batcher_batch_size_"
	mQueueWait  = "inferd_batcher_queue_wait_seconds_"
	mRunSeconds = "inferd_batcher_run_seconds_"
)

// uiCounters reads every model's counters from the metrics set, parsing
// its Prometheus text: the set is the one account of the figures, and
// this runs once per poll.
func (s *Server) uiCounters() map[string]*uiCounters {
	var buf bytes.Buffer
	s.set.WritePrometheus(&buf)
	out := map[string]*uiCounters{}
	get := func(model string) *uiCounters {
		c := out[model]
		if c == nil {
			c = &uiCounters{}
			out[model] = c
		}
		return c
	}
	for line := range bytes.Lines(buf.Bytes()) {
		if !bytes.HasPrefix(line, []byte("inferd_")) {
			continue
		}
		name, labels, v, ok := parseSample(line)
		if !ok {
			continue
		}
		model := labelValue(labels, "model")
		if model == "" {
			continue
		}
		switch {
		case name == mRequests:
			if !runsModel(labelValue(labels, "endpoint")) {
				continue
			}
			c := get(model)
			c.requests += v
			if !strings.HasPrefix(labelValue(labels, "code"), "2") {
				c.errors += v
			}
		case name == mDuration:
			if !runsModel(labelValue(labels, "endpoint")) || !strings.HasPrefix(labelValue(labels, "code"), "2") {
				continue
			}
			if le, err := strconv.ParseFloat(labelValue(labels, "le"), 64); err == nil {
				get(model).latency.add(le, v)
			}
		case strings.HasPrefix(name, mBatchSize):
			c := get(model)
			switch name[len(mBatchSize):] {
			case "bucket":
				if le, err := strconv.ParseFloat(labelValue(labels, "le"), 64); err == nil {
					c.batches.add(le, v)
				}
			case "sum":
				c.batchSum = v
			case "count":
				c.batchCount = v
			}
		case strings.HasPrefix(name, mQueueWait):
			c := get(model)
			switch name[len(mQueueWait):] {
			case "sum":
				c.queueSum = v
			case "count":
				c.queueCount = v
			}
		case strings.HasPrefix(name, mRunSeconds):
			c := get(model)
			switch name[len(mRunSeconds):] {
			case "sum":
				c.runSum = v
			case "count":
				c.runCount = v
			}
		}
	}
	return out
}

// runsModel reports whether requests to endpoint run the model (not its
// metadata or readiness).
func runsModel(endpoint string) bool {
	return endpoint == epInfer || endpoint == epClassify || endpoint == epRecog
}

// parseSample splits a sample line, `name{labels} value`, into its parts.
func parseSample(line []byte) (name string, labels []byte, v float64, ok bool) {
	line = bytes.TrimSpace(line)
	sp := bytes.LastIndexByte(line, ' ')
	if sp < 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(string(line[sp+1:]), 64)
	if err != nil {
		return "", nil, 0, false
	}
	head := line[:sp]
	if i := bytes.IndexByte(head, '{'); i >= 0 && head[len(head)-1] == '}' {
		return string(head[:i]), head[i+1 : len(head)-1], v, true
	}
	return string(head), nil, v, true
}

// labelValue returns the value of the label key in labels
// (`a="x",b="y\"z"`), unescaped; "" when absent.
func labelValue(labels []byte, key string) string {
	for len(labels) > 0 {
		eq := bytes.IndexByte(labels, '=')
		if eq < 0 || eq+1 >= len(labels) || labels[eq+1] != '"' {
			return ""
		}
		k := labels[:eq]
		var val []byte
		i := eq + 2
		for ; i < len(labels) && labels[i] != '"'; i++ {
			if labels[i] == '\\' && i+1 < len(labels) {
				i++
				if labels[i] == 'n' {
					val = append(val, '\n')
					continue
				}
			}
			val = append(val, labels[i])
		}
		if string(k) == key {
			return string(val)
		}
		labels = bytes.TrimPrefix(labels[min(i+1, len(labels)):], []byte(","))
	}
	return ""
}

// uiStatusResponse is the body of GET /v2/ui/status.
type uiStatusResponse struct {
	Replica string  `json:"replica"`
	Version string  `json:"version"`
	Ready   bool    `json:"ready"`
	Time    float64 `json:"time"` // Unix seconds
	// WindowSeconds is the span of the models' rates, quantiles and
	// histograms; 0 on a first poll, which has quantiles and histograms
	// since the models loaded and no rates.
	WindowSeconds float64   `json:"window_seconds"`
	Models        []uiModel `json:"models"`
}

// uiModel is one model's state in uiStatusResponse. Figures that the
// window has no data for (no request, no batch) are null.
type uiModel struct {
	Name       string `json:"name"`
	Ready      bool   `json:"ready"`
	Device     string `json:"device"`
	Instances  int    `json:"instances"`
	MaxBatch   int    `json:"max_batch"`
	Images     bool   `json:"images"` // takes images: /classify serves it
	QueueDepth int    `json:"queue_depth"`
	// Requests and Errors count since the server started: answered
	// inference requests (infer, classify, recognize) and of them those
	// not 2xx.
	Requests  uint64   `json:"requests"`
	Errors    uint64   `json:"errors"`
	Rate      *float64 `json:"rate"`       // answered per second
	ErrorRate *float64 `json:"error_rate"` // not 2xx per second
	P50       *float64 `json:"p50_ms"`     // of 2xx answers, end to end in the server
	P99       *float64 `json:"p99_ms"`
	QueueMs   *float64 `json:"queue_ms"`   // mean wait in the batcher's queue, per request
	ComputeMs *float64 `json:"compute_ms"` // mean run time, per batch
	MeanBatch *float64 `json:"mean_batch"` // rows per batch
	// BatchSizes are the batches run by size ("1", "3-4", ...).
	BatchSizes []uiBucket `json:"batch_sizes"`
}

type uiBucket struct {
	Size  string `json:"size"`
	Count uint64 `json:"count"`
}

// uiStatus serves GET /v2/ui/status.
func (s *Server) uiStatus(ctx *fasthttp.RequestCtx) {
	now := time.Now()
	cur := s.uiCounters()
	base, windowed := s.ui.window(now, cur)
	resp := uiStatusResponse{Replica: s.replica, Version: Version, Ready: s.Ready(),
		Time: float64(now.UnixMilli()) / 1e3, Models: []uiModel{}}
	var secs float64
	if windowed {
		secs = now.Sub(base.at).Seconds()
		resp.WindowSeconds = secs
	}
	for _, m := range s.Models() {
		c := cur[m.Name]
		if c == nil {
			c = &uiCounters{}
		}
		um := uiModel{Name: m.Name, Ready: m.Ready(), Device: m.Device().String(),
			Instances: m.Instances(), MaxBatch: m.MaxBatch(), Images: m.Images() != nil,
			QueueDepth: m.QueueDepth(), Requests: uint64(c.requests), Errors: uint64(c.errors),
			BatchSizes: []uiBucket{}}
		d := c
		if windowed {
			d = c.since(base.models[m.Name])
			um.Rate, um.ErrorRate = ratio(d.requests, secs), ratio(d.errors, secs)
		}
		if q, ok := d.latency.quantile(0.5); ok {
			um.P50 = ptr(q * 1e3)
		}
		if q, ok := d.latency.quantile(0.99); ok {
			um.P99 = ptr(q * 1e3)
		}
		um.QueueMs = ratio(d.queueSum*1e3, d.queueCount)
		um.ComputeMs = ratio(d.runSum*1e3, d.runCount)
		um.MeanBatch = ratio(d.batchSum, d.batchCount)
		um.BatchSizes = sizes(d.batches)
		resp.Models = append(resp.Models, um)
	}
	writeValue(ctx, resp)
}

// since is c less base (nil: zero); a counter that went back (it was
// reset) counts from zero.
func (c *uiCounters) since(base *uiCounters) *uiCounters {
	if base == nil || c.requests < base.requests || c.batchCount < base.batchCount ||
		c.queueCount < base.queueCount || c.runCount < base.runCount {
		return c
	}
	return &uiCounters{
		requests: c.requests - base.requests, errors: max(c.errors-base.errors, 0),
		latency: c.latency.minus(base.latency), batches: c.batches.minus(base.batches),
		batchSum: c.batchSum - base.batchSum, batchCount: c.batchCount - base.batchCount,
		queueSum: c.queueSum - base.queueSum, queueCount: c.queueCount - base.queueCount,
		runSum: c.runSum - base.runSum, runCount: c.runCount - base.runCount,
	}
}

// sizes turns a cumulative batch-size histogram into counts per size
// range: bounds 1, 2, 4, 8 are the sizes "1", "2", "3-4", "5-8"; the
// +Inf bucket only when it has batches.
func sizes(b buckets) []uiBucket {
	out := []uiBucket{}
	prev, below := 0.0, 0.0
	for _, x := range b {
		n := uint64(max(x.count-below, 0))
		switch {
		case math.IsInf(x.le, 1):
			if n > 0 {
				out = append(out, uiBucket{Size: ">" + strconv.FormatFloat(prev, 'f', -1, 64), Count: n})
			}
		case x.le <= prev+1:
			out = append(out, uiBucket{Size: strconv.FormatFloat(x.le, 'f', -1, 64), Count: n})
		default:
			out = append(out, uiBucket{Size: strconv.FormatFloat(math.Floor(prev)+1, 'f', -1, 64) + "-" + strconv.FormatFloat(x.le, 'f', -1, 64), Count: n})
		}
		prev, below = x.le, x.count
	}
	return out
}

// ratio is a/b, or nil when b is not positive.
func ratio(a, b float64) *float64 {
	if b <= 0 {
		return nil
	}
	return ptr(a / b)
}

func ptr(v float64) *float64 {
	v = math.Round(v*1000) / 1000
	return &v
}
