package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/inferd/inferd/loadtest"
)

// common are the flags every command takes.
type common struct {
	fs       *flag.FlagSet
	cfg      loadtest.Config
	endpoint string
	format   string
	output   string
}

func newCommon(name string, stderr io.Writer) *common {
	c := &common{fs: flag.NewFlagSet("loadtest "+name, flag.ContinueOnError)}
	fs := c.fs
	fs.SetOutput(stderr)
	fs.StringVar(&c.cfg.URL, "url", "http://127.0.0.1:8000", "target server base `URL`")
	fs.StringVar(&c.cfg.Model, "model", "resnet50", "model `name`; -endpoint recognize loads the server's first model, which -model, if given, must name")
	fs.StringVar(&c.endpoint, "endpoint", "classify", "classify, recognize, infer-json or infer-binary")
	fs.StringVar(&c.cfg.Images, "images", "", "image `PATH`: a jpeg/png file or a directory of them (default: generated 256x256 jpegs)")
	fs.StringVar(&c.cfg.Tensor, "tensor", "", "raw little-endian `FILE` with one row of every input, for infer-* (default: generated)")
	fs.DurationVar(&c.cfg.Timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.IntVar(&c.cfg.MaxWorkers, "max-workers", 1024, "most concurrent requests of an open loop")
	fs.StringVar(&c.format, "format", "text", "report format: text, json or csv")
	fs.BoolVar(&c.cfg.NoServerMetrics, "no-server-metrics", false, "no server view: do not read the target's /metrics or /v2/models/M/stats")
	fs.StringVar(&c.cfg.AcceptEncoding, "accept-encoding", "identity", "Accept-Encoding of every request (gzip: measure with response compression)")
	fs.Var(headerFlag{&c.cfg.Headers}, "header", "`'Name: value'` sent with every request, the load's and the metadata/metrics probes (repeatable; e.g. 'Authorization: Bearer KEY')")
	fs.StringVar(&c.cfg.CACert, "cacert", "", "PEM `FILE` of CA certificates trusted for an https -url, beside the system's")
	fs.StringVar(&c.cfg.Protocol, "protocol", "http", "http, or grpc: KServe v2 gRPC ModelInfer with raw tensors (the infer-binary load; -header goes as metadata, TLS when -url is https; the server view still comes from -url)")
	fs.StringVar(&c.cfg.GRPCAddr, "grpc-addr", "", "gRPC `host:port` for -protocol grpc (default: -url's host, port 8001)")
	fs.IntVar(&c.cfg.GRPCConns, "grpc-conns", loadtest.DefaultGRPCConns, "gRPC connections the calls are spread over, round robin (1: one channel, as most gRPC clients)")
	return c
}

// headerFlag is a repeatable -header 'Name: value'.
type headerFlag struct{ h *http.Header }

func (f headerFlag) String() string {
	if f.h == nil {
		return ""
	}
	var b strings.Builder
	_ = f.h.Write(&b)
	return strings.TrimSpace(b.String())
}

func (f headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return errors.New("want 'Name: value'")
	}
	if *f.h == nil {
		*f.h = http.Header{}
	}
	f.h.Add(name, strings.TrimSpace(value))
	return nil
}

// parse parses args, refusing positional arguments and a bad format.
func (c *common) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (flags only; see -h)", c.fs.Args())
	}
	c.cfg.Endpoint = loadtest.Endpoint(c.endpoint)
	if c.cfg.Protocol == loadtest.ProtocolGRPC && !c.set("endpoint") {
		c.cfg.Endpoint = loadtest.InferBinary // gRPC's only load
	}
	if c.cfg.Endpoint == loadtest.Recognize && !c.set("model") {
		// /recognize names no model: the server's first answers it.
		c.cfg.Model = ""
	}
	switch c.format {
	case loadtest.FormatText, loadtest.FormatJSON, loadtest.FormatCSV:
	default:
		return fmt.Errorf("-format %q: want text, json or csv", c.format)
	}
	return nil
}

// set reports whether the flag called name was given.
func (c *common) set(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// usageError prints err (flag already printed its own) and returns the
// usage exit code.
func usageError(stderr io.Writer, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if !strings.HasPrefix(err.Error(), "flag provided but not defined") && !strings.Contains(err.Error(), "invalid value") &&
		!strings.Contains(err.Error(), "flag needs an argument") {
		fmt.Fprintln(stderr, "loadtest:", err)
	}
	return exitUsage
}

// openResults creates the results file named by -output, if any, and
// points c.cfg.Output at it. The returned function closes it, reporting a
// failed close (results lost); it is safe to call more than once.
func (c *common) openResults() (closeResults func() error, err error) {
	if c.output == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(c.output)
	if err != nil {
		return nil, fmt.Errorf("results file: %w", err)
	}
	c.cfg.Output = f
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			if cerr := f.Close(); cerr != nil {
				err = fmt.Errorf("results file: %w", cerr)
			}
		})
		return err
	}, nil
}

// parseList parses "10,20,40".
func parseList(flagName, s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-%s: %q is not a positive number", flagName, f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-%s: empty list", flagName)
	}
	return out, nil
}
