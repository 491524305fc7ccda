package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/inferd/inferd/kserve"
)

// probeTimeout bounds the metadata and /metrics requests made around a run,
// so an unreachable or hung target fails within seconds.
const probeTimeout = 5 * time.Second

// probeClient is used for the requests around a run, not for the load.
var probeClient = &http.Client{Timeout: probeTimeout}

// get fetches pr's base+path, failing on a non-200 answer with its body.
func get(ctx context.Context, pr *prober, path string) ([]byte, error) {
	return probe(ctx, pr, http.MethodGet, path, "")
}

// probe sends method to pr's base+path with a JSON body (none when
// empty), failing on a non-200 answer with its body.
func probe(ctx context.Context, pr *prober, method, path, body string) ([]byte, error) {
	base := pr.base
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	setHeaders(req, pr.header)
	resp, err := pr.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if uerr := untrusted(base, err); uerr != nil {
			return nil, uerr
		}
		return nil, fmt.Errorf("target %s unreachable: %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s%s: %w", base, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return b, &statusError{code: resp.StatusCode, method: method, path: path, body: strings.TrimSpace(string(b))}
	}
	return b, nil
}

// statusError is a non-200 answer to a probe.
type statusError struct {
	code   int
	method string
	path   string
	body   string
}

func (e *statusError) Error() string {
	msg := e.body
	var v struct{ Error string }
	if json.Unmarshal([]byte(e.body), &v) == nil && v.Error != "" {
		msg = v.Error
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.method, e.path, e.code, http.StatusText(e.code), msg)
}

// recognizeModel returns the model that answers /recognize on base: the
// server's first, as its repository index lists them (config order).
// want, when not empty, must be that model: /recognize takes no model, so
// any other would be a load on one model and a server view of another.
func recognizeModel(ctx context.Context, pr *prober, want string) (string, error) {
	base := pr.base
	body, err := probe(ctx, pr, http.MethodPost, "/v2/repository/index", "{}")
	if err != nil {
		return "", fmt.Errorf("the model of /recognize (the server's first): %w", err)
	}
	var index []struct{ Name, State, Reason string }
	if err := json.Unmarshal(body, &index); err != nil {
		return "", fmt.Errorf("the model of /recognize: repository index from %s: %w", base, err)
	}
	if len(index) == 0 {
		return "", fmt.Errorf("the model of /recognize: %s serves no model", base)
	}
	first := index[0]
	switch {
	case want != "" && want != first.Name:
		return "", fmt.Errorf("/recognize on %s is answered by its first model %q, not %q: leave the model out, or use the classify endpoint for %q", base, first.Name, want, want)
	case first.State != "READY":
		return "", fmt.Errorf("/recognize on %s: its first model %q is %s %s", base, first.Name, first.State, first.Reason)
	}
	return first.Name, nil
}

// fetchMetadata reads the model's metadata, naming the model when the
// server does not have it.
func fetchMetadata(ctx context.Context, pr *prober, model string) (*kserve.ModelMetadata, error) {
	base := pr.base
	body, err := get(ctx, pr, "/v2/models/"+url.PathEscape(model))
	if err != nil {
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusNotFound {
			return nil, fmt.Errorf("model %q not found on %s (%w)", model, base, err)
		}
		return nil, fmt.Errorf("model %q metadata: %w", model, err)
	}
	var md kserve.ModelMetadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("model %q metadata from %s: %w", model, base, err)
	}
	if len(md.Inputs) == 0 {
		return nil, fmt.Errorf("model %q metadata from %s lists no inputs", model, base)
	}
	return &md, nil
}

// rowShape is the shape of one row of t: its shape less the batch
// dimension, which must be the only dynamic one.
func rowShape(t kserve.TensorMetadata) ([]int64, error) {
	if len(t.Shape) == 0 {
		return nil, fmt.Errorf("input %q has no dimensions", t.Name)
	}
	for _, d := range t.Shape[1:] {
		if d < 0 {
			return nil, fmt.Errorf("input %q shape %v: only the batch dimension may be dynamic", t.Name, t.Shape)
		}
	}
	return t.Shape[1:], nil
}

// rowBytes is the byte size of one row of t.
func rowBytes(t kserve.TensorMetadata) (int, error) {
	shape, err := rowShape(t)
	if err != nil {
		return 0, err
	}
	size, ok := kserve.DatatypeSize(t.Datatype)
	if !ok {
		return 0, fmt.Errorf("input %q datatype %q is not supported", t.Name, t.Datatype)
	}
	n := size
	for _, d := range shape {
		n *= int(d)
	}
	return n, nil
}
