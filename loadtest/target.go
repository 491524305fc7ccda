package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/inferd/inferd/kserve"
)

// plan is a prepared load: the requests to send, checked against the
// server's metadata. Sweep and SLO prepare once and attack many times.
type plan struct {
	cfg     Config
	targets []vegeta.Target
	next    atomic.Uint64
}

// prepare checks cfg, asks the server for the model's metadata and builds
// the request bodies.
func prepare(ctx context.Context, cfg Config) (*plan, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(cfg.URL, "/")
	p := &plan{cfg: cfg}
	var md *kserve.ModelMetadata
	if cfg.Endpoint == Recognize {
		// /recognize serves the default model; check the server answers.
		if _, err := get(ctx, base, "/v2/health/live"); err != nil {
			return nil, err
		}
	} else if md, err = fetchMetadata(ctx, base, cfg.Model); err != nil {
		return nil, err
	}
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
	}
	return p, nil
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
