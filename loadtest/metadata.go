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

// get fetches base+path, failing on a non-200 answer with its body.
func get(ctx context.Context, base, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("target %s unreachable: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s%s: %w", base, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, &statusError{code: resp.StatusCode, path: path, body: strings.TrimSpace(string(body))}
	}
	return body, nil
}

// statusError is a non-200 answer to a probe.
type statusError struct {
	code int
	path string
	body string
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
	return fmt.Sprintf("GET %s: %d %s: %s", e.path, e.code, http.StatusText(e.code), msg)
}

// fetchMetadata reads the model's metadata, naming the model when the
// server does not have it.
func fetchMetadata(ctx context.Context, base, model string) (*kserve.ModelMetadata, error) {
	body, err := get(ctx, base, "/v2/models/"+url.PathEscape(model))
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
