package loadtest

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Endpoint is what a request hits.
type Endpoint string

// The endpoints a load can target.
const (
	// Classify posts an encoded image to /v2/models/M/classify.
	Classify Endpoint = "classify"
	// Recognize posts an image as the multipart field "image" to
	// /recognize, which the server's first model answers.
	Recognize Endpoint = "recognize"
	// InferJSON posts a KServe v2 JSON request to /v2/models/M/infer.
	InferJSON Endpoint = "infer-json"
	// InferBinary posts a KServe v2 request with the binary tensor
	// extension (JSON header + raw tensor bytes) to /v2/models/M/infer.
	InferBinary Endpoint = "infer-binary"
)

// Endpoints lists the valid endpoints, for messages and flag help.
var Endpoints = []Endpoint{Classify, Recognize, InferJSON, InferBinary}

// Pacers of an open-loop run.
const (
	// PacerConstant sends Rate requests per second.
	PacerConstant = "constant"
	// PacerRamp starts at Rate and climbs linearly to RampTo at the end
	// of Duration (vegeta's LinearPacer).
	PacerRamp = "ramp"
	// PacerSine oscillates around Rate by ±SineAmp with period SinePeriod
	// (vegeta's SinePacer).
	PacerSine = "sine"
)

// Config describes one load. The zero value of every optional field means
// the default given in its comment.
type Config struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8000.
	URL string
	// Model is the model name; its metadata (GET /v2/models/Model) gives
	// the input shapes and proves it exists. Recognize takes no model in
	// its path: the server answers it with its first model (config order,
	// the first of POST /v2/repository/index), whose figures are then the
	// server view. Leave Model empty for it; set, it must name that model.
	Model string
	// Endpoint is what each request hits; default Classify.
	Endpoint Endpoint
	// Images is an image file or a directory of .jpg/.jpeg/.png files for
	// the image endpoints; empty means generated JPEGs.
	Images string
	// Tensor is a raw little-endian file holding one row of every input,
	// in metadata order, for the infer endpoints; empty means generated.
	Tensor string

	// Rate is the open-loop rate in requests per second (the start rate of
	// a ramp, the mean of a sine). Exactly one of Rate and Concurrency is
	// set.
	Rate float64
	// Concurrency is the closed-loop concurrency: that many workers, each
	// sending its next request when its last one is answered.
	Concurrency int
	// Duration is how long requests are sent; default 10s.
	Duration time.Duration
	// Pacer is PacerConstant (default), PacerRamp or PacerSine.
	Pacer string
	// RampTo is a ramp's final rate; default 2*Rate.
	RampTo float64
	// SinePeriod is a sine's period; default Duration/2.
	SinePeriod time.Duration
	// SineAmp is a sine's amplitude in requests per second; default Rate/2.
	SineAmp float64

	// Timeout bounds each request; default 30s.
	Timeout time.Duration
	// MaxWorkers caps an open loop's concurrent requests; default 1024.
	MaxWorkers int

	// Output, when set, receives the raw results in vegeta's gob encoding:
	// one gob stream for a Run, a Sweep or a FindSLO, however many
	// attacks they make, so `vegeta report`, `plot` and `encode` read it
	// whole. Each attack's results carry its Mode as vegeta's attack name;
	// a repeat of a mode is named "MODE #2", "MODE #3" and so on.
	Output io.Writer
	// Plot, when set, receives vegeta's HTML latency plot of the run, or
	// of a Sweep or FindSLO with a series per attack, written at the end.
	Plot io.Writer
	// Progress, when set, receives a progress line (rewritten with \r)
	// about once a second; callers pass os.Stderr only when it is a
	// terminal.
	Progress io.Writer
	// NoServerMetrics skips the server view: neither /metrics nor
	// /v2/models/M/stats is read.
	NoServerMetrics bool
	// AcceptEncoding is sent with every request. Default "identity": the
	// server's cost without response compression, as Triton's
	// perf_analyzer measures by default (Go's client would otherwise ask
	// for gzip on its own). "gzip" measures it with compression.
	AcceptEncoding string
	// Headers are sent with every request: the load's and the probes
	// around it (metadata, /metrics, statistics), e.g. "Authorization:
	// Bearer KEY" for a gateway that wants an API key. Each replaces a
	// header of its name that loadtest would set (Content-Type,
	// Accept-Encoding); "Host" sets the request's host. Default none.
	Headers http.Header
	// CACert is a PEM file of CA certificates that an https URL's
	// certificate may chain to, beside the system's roots: the load and
	// the probes verify against both (a gateway's self-signed CA).
	// Default the system's roots only; an unreadable file or one with no
	// certificate fails the run before any request.
	CACert string

	// Protocol is ProtocolHTTP (default) or ProtocolGRPC: KServe v2 gRPC
	// ModelInfer calls with the tensors in raw_input_contents, the
	// infer-binary endpoint's load over gRPC (Endpoint defaults to
	// InferBinary and may be nothing else). The model's metadata is read
	// over gRPC; the server view (/metrics, statistics) still comes from
	// URL, the HTTP port. Headers go as gRPC metadata ("Host" as the
	// authority); the calls use TLS when URL is https, with CACert's
	// roots; AcceptEncoding "gzip" compresses both ways, else nothing is
	// compressed.
	Protocol string
	// GRPCAddr is the gRPC host:port; default URL's host on port 8001.
	GRPCAddr string
	// GRPCConns is how many gRPC connections the calls are spread over,
	// round robin; default 4. One connection carries every call over one
	// TCP connection that grpc-go reads and writes in one goroutine each
	// side: with 602 KB tensors at 64 calls in flight it measured 1.5x
	// slower than 4 (bench/results/grpc-2026-11-30.md), the same at 16.
	// Trap: 1 is what most gRPC clients do (one channel per server), so
	// it is the figure such a client sees.
	GRPCConns int
}

// withDefaults fills in defaults and checks the fields.
func (c Config) withDefaults() (Config, error) {
	c.Protocol = cmp.Or(c.Protocol, ProtocolHTTP)
	if c.Protocol == ProtocolGRPC && c.Endpoint == "" {
		c.Endpoint = InferBinary
	}
	c.Endpoint = cmp.Or(c.Endpoint, Classify)
	c.GRPCConns = cmp.Or(c.GRPCConns, DefaultGRPCConns)
	c.Duration = cmp.Or(c.Duration, 10*time.Second)
	c.Pacer = cmp.Or(c.Pacer, PacerConstant)
	c.AcceptEncoding = cmp.Or(c.AcceptEncoding, "identity")
	c.Timeout = cmp.Or(c.Timeout, 30*time.Second)
	c.MaxWorkers = cmp.Or(c.MaxWorkers, 1024)
	if c.Pacer == PacerRamp && c.RampTo == 0 {
		c.RampTo = 2 * c.Rate
	}
	if c.Pacer == PacerSine {
		if c.SinePeriod == 0 {
			c.SinePeriod = c.Duration / 2
		}
		if c.SineAmp == 0 {
			c.SineAmp = c.Rate / 2
		}
	}
	return c, c.validate()
}

func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("no target url (want e.g. http://127.0.0.1:8000)")
	case err != nil:
		return fmt.Errorf("target url %q: want http://host:port", c.URL)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("target url %q: want http://host:port", c.URL)
	}
	if c.Model == "" && c.Endpoint != Recognize {
		return errors.New("no model name")
	}
	if !slices.Contains(Endpoints, c.Endpoint) {
		return fmt.Errorf("endpoint %q: want one of %s", c.Endpoint, endpointList())
	}
	switch c.Protocol {
	case ProtocolHTTP:
	case ProtocolGRPC:
		if c.Endpoint != InferBinary {
			return fmt.Errorf("protocol grpc sends raw tensors (the infer-binary endpoint), not %s", c.Endpoint)
		}
		if _, port, err := net.SplitHostPort(c.grpcAddr()); err != nil || port == "" {
			return fmt.Errorf("grpc address %q: want host:port", c.GRPCAddr)
		}
		if c.GRPCConns < 0 {
			return fmt.Errorf("grpc connections %d: want > 0", c.GRPCConns)
		}
	default:
		return fmt.Errorf("protocol %q: want http or grpc", c.Protocol)
	}
	if c.Tensor != "" && c.Endpoint != InferJSON && c.Endpoint != InferBinary {
		return fmt.Errorf("a tensor file is for the infer endpoints, not %s", c.Endpoint)
	}
	if c.Images != "" && (c.Endpoint == InferJSON || c.Endpoint == InferBinary) {
		return fmt.Errorf("image files are for the image endpoints, not %s", c.Endpoint)
	}
	switch {
	case c.Rate < 0:
		return fmt.Errorf("rate %g: want > 0", c.Rate)
	case c.Concurrency < 0:
		return fmt.Errorf("concurrency %d: want > 0", c.Concurrency)
	case c.Rate > 0 && c.Concurrency > 0:
		return errors.New("both a rate and a concurrency: an open loop takes a rate, a closed loop a concurrency")
	case c.Rate == 0 && c.Concurrency == 0:
		return errors.New("neither a rate nor a concurrency")
	case c.Duration < 0:
		return fmt.Errorf("duration %s: want > 0", c.Duration)
	case c.Timeout < 0:
		return fmt.Errorf("timeout %s: want > 0", c.Timeout)
	case c.MaxWorkers < 0:
		return fmt.Errorf("max workers %d: want > 0", c.MaxWorkers)
	}
	switch c.Pacer {
	case PacerConstant:
	case PacerRamp, PacerSine:
		if c.Concurrency > 0 {
			return fmt.Errorf("pacer %s shapes an open loop's rate; a closed loop (concurrency) has none", c.Pacer)
		}
		if c.Pacer == PacerRamp && c.RampTo <= 0 {
			return fmt.Errorf("ramp to %g: want > 0", c.RampTo)
		}
		if c.Pacer == PacerSine && (c.SineAmp < 0 || c.SineAmp >= c.Rate || c.SinePeriod <= 0) {
			return fmt.Errorf("sine amplitude %g and period %s: want 0 <= amplitude < rate and period > 0", c.SineAmp, c.SinePeriod)
		}
	default:
		return fmt.Errorf("pacer %q: want constant, ramp or sine", c.Pacer)
	}
	return nil
}

func endpointList() string {
	s := make([]string, len(Endpoints))
	for i, e := range Endpoints {
		s[i] = string(e)
	}
	return strings.Join(s, ", ")
}

// mode describes the load shape, e.g. "open constant 100/s".
func (c Config) mode() string {
	if c.Concurrency > 0 {
		return fmt.Sprintf("closed concurrency %d", c.Concurrency)
	}
	switch c.Pacer {
	case PacerRamp:
		return fmt.Sprintf("open ramp %g/s to %g/s", c.Rate, c.RampTo)
	case PacerSine:
		return fmt.Sprintf("open sine %g/s ±%g/s period %s", c.Rate, c.SineAmp, c.SinePeriod)
	}
	return fmt.Sprintf("open constant %g/s", c.Rate)
}
