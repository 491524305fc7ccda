package loadtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/tsenart/vegeta/v12/lib/plot"

	"github.com/inferd/inferd/kserve"
)

// plan is a prepared load: the requests to send, checked against the
// server's metadata, and the sinks every attack of it writes to. Sweep and
// SLO prepare once and attack many times; the results of all their attacks
// go to one gob stream and one plot, as vegeta's decoder and plot need.
type plan struct {
	cfg     Config
	tls     *tls.Config // the load's: cfg.CACert's roots
	probes  *prober
	targets []vegeta.Target
	next    atomic.Uint64
	// grpc is the gRPC load (Protocol grpc), nil for HTTP: its calls
	// replace targets.
	grpc *grpcLoad

	// enc is the one vegeta encoder on cfg.Output: a gob encoder sends
	// its type once, and a second encoder on the same file sends it again,
	// which vegeta's decoder refuses ("gob: duplicate type received").
	enc vegeta.Encoder
	// plot collects every attack's results, a series each; finish writes
	// it to cfg.Plot.
	plot *plot.Plot
	// attacks counts the attacks of each mode, to name repeats apart:
	// vegeta's plot orders a series by sequence number from 0, so two
	// attacks under one name would lose each other's points.
	attacks map[string]int
}

// prepare checks cfg, asks the server for the model's metadata and builds
// the request bodies.
func prepare(ctx context.Context, cfg Config) (*plan, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(cfg.URL, "/")
	tlsConf, err := tlsConfig(cfg.CACert)
	if err != nil {
		return nil, err
	}
	pr := newProber(base, cfg.Headers, tlsConf)
	if cfg.Protocol == ProtocolGRPC {
		g, err := newGRPCLoad(ctx, cfg, tlsConf)
		if err != nil {
			return nil, err
		}
		return newPlan(cfg, tlsConf, pr, g), nil
	}
	var md *kserve.ModelMetadata
	if cfg.Endpoint == Recognize {
		// /recognize serves the server's first model: its counters are
		// the server view. Reading it also proves the server answers.
		if cfg.Model, err = recognizeModel(ctx, pr, cfg.Model); err != nil {
			return nil, err
		}
	} else if md, err = fetchMetadata(ctx, pr, cfg.Model); err != nil {
		return nil, err
	}
	p := newPlan(cfg, tlsConf, pr, nil)
	modelURL := base + "/v2/models/" + url.PathEscape(cfg.Model)
	switch cfg.Endpoint {
	case Classify, Recognize:
		imgs, err := loadImages(cfg.Images)
		if err != nil {
			return nil, err
		}
		for _, img := range imgs {
			t := vegeta.Target{Method: http.MethodPost, Header: http.Header{}}
			if cfg.Endpoint == Classify {
				t.URL, t.Body = modelURL+"/classify", img
				t.Header.Set("Content-Type", http.DetectContentType(img))
			} else {
				body, ctype, err := multipartImage(img)
				if err != nil {
					return nil, err
				}
				t.URL, t.Body = base+"/recognize", body
				t.Header.Set("Content-Type", ctype)
			}
			p.targets = append(p.targets, t)
		}
	case InferJSON, InferBinary:
		rows, err := tensorRows(md, cfg.Tensor)
		if err != nil {
			return nil, err
		}
		t := vegeta.Target{Method: http.MethodPost, URL: modelURL + "/infer", Header: http.Header{}}
		if cfg.Endpoint == InferJSON {
			if t.Body, err = inferJSONBody(md, rows); err != nil {
				return nil, err
			}
			t.Header.Set("Content-Type", "application/json")
		} else {
			body, hlen := inferBinaryBody(md, rows)
			t.Body = body
			t.Header.Set("Content-Type", "application/octet-stream")
			t.Header.Set("Inference-Header-Content-Length", strconv.Itoa(hlen))
		}
		p.targets = append(p.targets, t)
	}
	for _, t := range p.targets {
		t.Header.Set("Accept-Encoding", cfg.AcceptEncoding)
		mergeHeaders(t.Header, cfg.Headers)
	}
	return p, nil
}

// newPlan returns a plan of cfg with its sinks; the caller adds the
// targets, or g for a gRPC load.
func newPlan(cfg Config, tlsConf *tls.Config, pr *prober, g *grpcLoad) *plan {
	p := &plan{cfg: cfg, tls: tlsConf, probes: pr, grpc: g, attacks: map[string]int{}}
	if cfg.Output != nil {
		p.enc = vegeta.NewEncoder(cfg.Output)
	}
	if cfg.Plot != nil {
		p.plot = plot.New(plot.Title("loadtest "+cfg.target()), plot.Downsample(4000), plot.Label(plot.ErrorLabeler))
	}
	return p
}

// attackName names an attack of mode in the results and the plot: the
// mode, then "mode #2", "mode #3" for repeats (an SLO search measures a
// rate in several windows; a sweep may list a point twice).
func (p *plan) attackName(mode string) string {
	p.attacks[mode]++
	if n := p.attacks[mode]; n > 1 {
		return fmt.Sprintf("%s #%d", mode, n)
	}
	return mode
}

// finish closes the gRPC connections, if any, and writes the plot of
// every attack made, if one was asked for.
func (p *plan) finish() error {
	p.grpc.close()
	if p.plot == nil {
		return nil
	}
	p.plot.Close()
	if _, err := p.plot.WriteTo(p.cfg.Plot); err != nil {
		return fmt.Errorf("writing plot: %w", err)
	}
	return nil
}

// targeter hands out the targets round robin.
func (p *plan) targeter(t *vegeta.Target) error {
	if t == nil {
		return vegeta.ErrNilTarget
	}
	*t = p.targets[(p.next.Add(1)-1)%uint64(len(p.targets))]
	return nil
}

func multipartImage(img []byte) ([]byte, string, error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="image"; filename="image"`)
	h.Set("Content-Type", http.DetectContentType(img))
	part, err := w.CreatePart(h)
	if err != nil {
		return nil, "", fmt.Errorf("multipart body: %w", err)
	}
	part.Write(img)
	if err := w.Close(); err != nil {
		return nil, "", fmt.Errorf("multipart body: %w", err)
	}
	return buf.Bytes(), w.FormDataContentType(), nil
}
