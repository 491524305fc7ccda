package server

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/auth"
	"github.com/inferd/inferd/batcher"
	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/respcache"
)

// serverMetrics are the front end's own metrics; the batcher's (queue
// depth, queue wait, batch size, run time) live on the same set.
type serverMetrics struct {
	set      *metrics.Set
	inFlight *metrics.Gauge
	process  *processMetrics
	// connRejects count connections refused at accept, by reason.
	connRejects map[string]*metrics.Counter
	byKey       sync.Map // metricKey -> *requestMetrics
}

type metricKey struct {
	model, endpoint string
	code            int
	protocol        string
}

type requestMetrics struct {
	count    *metrics.Counter
	duration *metrics.PrometheusHistogram
}

// latencyBuckets cover 0.5 ms to 30 s.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newServerMetrics(set *metrics.Set) *serverMetrics {
	return &serverMetrics{
		set:      set,
		inFlight: set.NewGauge("inferd_http_requests_in_flight", nil),
		process:  newProcessMetrics(set),
		connRejects: map[string]*metrics.Counter{
			"per_client": set.NewCounter(`inferd_http_connections_rejected_total{reason="per_client"}`),
			"max":        set.NewCounter(`inferd_http_connections_rejected_total{reason="max"}`),
			// tls_handshake: the connection closed before its TLS handshake
			// completed (tls: set), counted where its first request would be.
			"tls_handshake": set.NewCounter(`inferd_http_connections_rejected_total{reason="tls_handshake"}`),
		},
	}
}

// connRejected counts a connection refused at accept.
func (m *serverMetrics) connRejected(reason string) { m.connRejects[reason].Inc() }

// Protocols, the protocol label of request metrics.
const (
	protoHTTP = "http"
	protoGRPC = "grpc"
)

// observe counts a finished HTTP request and its duration.
func (m *serverMetrics) observe(model, endpoint string, code int, d time.Duration) {
	m.observeProto(model, endpoint, code, protoHTTP, d)
}

// observeProto counts a finished request of protocol (protoHTTP or
// protoGRPC) and its duration. A gRPC call counts under the HTTP status the
// same request gets over HTTP (grpcStatus maps that status to its gRPC
// code), so that one code=~"5.." query covers both protocols.
func (m *serverMetrics) observeProto(model, endpoint string, code int, protocol string, d time.Duration) {
	k := metricKey{model, endpoint, code, protocol}
	v, ok := m.byKey.Load(k)
	if !ok {
		labels := fmt.Sprintf(`model=%q,endpoint=%q,code="%d",protocol=%q`, model, endpoint, code, protocol)
		v, _ = m.byKey.LoadOrStore(k, &requestMetrics{
			count: m.set.GetOrCreateCounter("inferd_http_requests_total{" + labels + "}"),
			duration: m.set.GetOrCreatePrometheusHistogramExt(
				"inferd_http_request_duration_seconds{"+labels+"}", latencyBuckets),
		})
	}
	rm := v.(*requestMetrics)
	rm.count.Inc()
	rm.duration.Update(d.Seconds())
}

// help describes the server's metric families; WritePrometheus emits
// "# HELP name" lines (metrics.ExposeMetadata) and serveMetrics fills in
// the text from here or from the package that owns the family
// (batcher.Help).
var help = map[string]string{
	"inferd_http_requests_total":             "Requests answered, by model, endpoint, HTTP status code and protocol (http, or grpc: a gRPC call counts under the HTTP status the same request gets over HTTP).",
	"inferd_http_request_duration_seconds":   "End-to-end request duration in seconds, by model, endpoint, HTTP status code and protocol (http or grpc).",
	"inferd_http_requests_in_flight":         "Requests being handled now, HTTP and gRPC.",
	"inferd_http_connections_rejected_total": "Connections refused, by reason: per_client (server.max_connections_per_client) or max (server.max_connections and its health reserve) when accepted; tls_handshake when the TLS handshake failed or did not finish within server.read_timeout.",
	"inferd_model_info":                      "Served models: device, ONNX Runtime version, max batch and instances (value 1).",
	"go_goroutines":                          "Goroutines that currently exist.",
	"go_gc_cycles_total":                     "Completed garbage collection cycles.",
	"go_memstats_heap_alloc_bytes":           "Bytes of allocated heap objects.",
	"go_memstats_sys_bytes":                  "Bytes of memory obtained from the OS by the Go runtime.",
	"process_cpu_seconds_total":              "User and system CPU time spent, in seconds.",
	"process_resident_memory_bytes":          "Resident memory size in bytes (ONNX Runtime's native memory included).",
	"process_virtual_memory_bytes":           "Virtual memory size in bytes.",
	"process_start_time_seconds":             "Start time of the process since the Unix epoch, in seconds.",
	"process_open_fds":                       "Open file descriptors.",
}

// serveMetrics serves GET /metrics: the server's set plus Go and process
// metrics, in the Prometheus text format with HELP and TYPE lines.
func (s *Server) serveMetrics(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	s.stats.process.update()
	var buf bytes.Buffer
	s.set.WritePrometheus(&buf)
	b := buf.Bytes()
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		b = rest
		if name, ok := bytes.CutPrefix(line, []byte("# HELP ")); ok && bytes.IndexByte(name, ' ') < 0 {
			text := help[string(name)]
			if text == "" {
				text = batcher.Help[string(name)]
			}
			if text == "" {
				text = budget.Help[string(name)]
			}
			if text == "" {
				text = auth.Help[string(name)]
			}
			if text == "" {
				text = respcache.Help[string(name)]
			}
			if text == "" {
				text = "Go runtime or process metric " + string(name) + "."
			}
			ctx.WriteString("# HELP ")
			ctx.Write(name)
			ctx.WriteString(" ")
			ctx.WriteString(text)
			ctx.WriteString("\n")
			continue
		}
		ctx.Write(line)
		ctx.WriteString("\n")
	}
}
