package server

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/host"
	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/kserve"
	"github.com/inferd/inferd/respcache"
)

// maxTopK bounds ?top_k=.
const maxTopK = 1000

// classify serves POST /v2/models/M/classify: a JPEG or PNG as the body (or
// the multipart field "image"), ?top_k= (default 5). It answers
// {"model":..,"predictions":[{"index":..,"label":..,"probability":..}]}.
func (s *Server) classify(ctx *fasthttp.RequestCtx, m *host.Model) {
	k := 5
	if v := ctx.QueryArgs().Peek("top_k"); v != nil {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > maxTopK {
			writeError(ctx, httperr.Errorf(http.StatusBadRequest, "top_k %q: want an integer from 1 to %d", v, maxTopK))
			return
		}
		k = n
	}
	preds, err := s.predict(ctx, m, k, false)
	if err != nil {
		writeError(ctx, err)
		return
	}
	b := append(ctx.Response.SwapBody(nil)[:0], `{"model":`...)
	b = kserve.AppendString(b, m.Name)
	b = append(b, `,"predictions":`...)
	b = appendPredictions(b, m, preds, true)
	b = append(b, '}')
	ctx.SetContentType("application/json")
	ctx.Response.SwapBody(b)
}

// recognize serves POST /recognize on the default model: the multipart
// field "image", answering the top 3 as [{"label":..,"probability":..}],
// the shape of the image-recognition service this project grew out of.
func (s *Server) recognize(ctx *fasthttp.RequestCtx, name string) {
	m := s.models.Acquire(name)
	if m == nil {
		writeError(ctx, httperr.Errorf(http.StatusServiceUnavailable, "no model loaded yet"))
		return
	}
	defer m.Release()
	if !bytes.HasPrefix(ctx.Request.Header.ContentType(), []byte("multipart/form-data")) && idType(ctx) == "" {
		writeError(ctx, httperr.Errorf(http.StatusBadRequest, "want a multipart/form-data body with the image in the field \"image\" (or the id POST /upload gave in the field \"id\"), or the id as a form (id=...) or JSON ({\"id\": ...})"))
		return
	}
	preds, err := s.predict(ctx, m, 3, true)
	if err != nil {
		writeError(ctx, err)
		return
	}
	b := appendPredictions(ctx.Response.SwapBody(nil)[:0], m, preds, false)
	ctx.SetContentType("application/json")
	ctx.Response.SwapBody(b)
}

// appendPredictions appends preds as a JSON array of
// {"index":..,"label":..,"probability":..}, without "index" unless
// withIndex.
func appendPredictions(b []byte, m *host.Model, preds []host.Class, withIndex bool) []byte {
	b = append(b, '[')
	for i, p := range preds {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		if withIndex {
			b = append(b, `"index":`...)
			b = strconv.AppendInt(b, int64(p.Index), 10)
			b = append(b, ',')
		}
		b = append(b, `"label":`...)
		b = kserve.AppendString(b, m.Label(p.Index))
		b = append(b, `,"probability":`...)
		b = strconv.AppendFloat(b, float64(p.Prob), 'g', 6, 32)
		b = append(b, '}')
	}
	return append(b, ']')
}

// predict decodes the request's image into a row, runs it through the
// batcher and returns the top k classes. With byID the request may name an
// image POST /upload stored instead of sending one (recognizeImage).
func (s *Server) predict(ctx *fasthttp.RequestCtx, m *host.Model, k int, byID bool) ([]host.Class, error) {
	if !m.Ready() {
		return nil, httperr.Errorf(http.StatusServiceUnavailable, "model %q is not ready", m.Name)
	}
	pre := m.Images()
	if pre == nil {
		return nil, httperr.Errorf(http.StatusBadRequest, "model %q does not take images (inputs: %s); use /v2/models/%s/infer", m.Name, tensorNames(m.Inputs()), m.Name)
	}
	out := m.Outputs()[0]
	if out.Datatype != "FP32" || len(out.Shape) != 2 {
		return nil, httperr.Errorf(http.StatusBadRequest, "model %q output %q is %s %s, not FP32 [N,classes] scores; use /v2/models/%s/infer", m.Name, out.Name, out.Datatype, gpu.FormatShape(out.Shape), m.Name)
	}
	// Cheap checks first: a request the queue would refuse costs no body
	// and no decode (for a cached model, once it is known to be a miss).
	cache := cacheUse(ctx, m)
	if err := admitEarly(m, cache); err != nil {
		return nil, err
	}
	h := s.budget.Hold()
	defer h.Release()
	b, err := s.readBody(ctx, &h, s.cfg.Server.MaxBodyBytes)
	defer b.release()
	if err != nil {
		return nil, err
	}
	var img []byte
	if byID {
		img, err = s.recognizeImage(ctx, b.b, &h)
	} else {
		img, _, err = imageBody(ctx, b.b, &h, false)
	}
	if err != nil {
		return nil, err
	}
	switch cache {
	case cacheOn:
		// A hit skips the decode, most of a small model's request; top_k
		// applies to the entry's scores.
		hashed := time.Now()
		e, hit, err := m.Cached(imageKey(m, img), hashed, ctx.Time(), func() (*respcache.Entry, error) {
			if err := m.Admit(); err != nil {
				return nil, err
			}
			j := m.GetJob(1)
			defer m.PutJob(j)
			if err := s.runImage(ctx, m, img, &h, j); err != nil {
				return nil, err
			}
			return j.Entry(), nil
		})
		if err != nil {
			return nil, err
		}
		setCacheHeader(ctx, hit)
		return m.Classes(e.Output(0).Data, k), nil
	case cacheBypass:
		ctx.Response.Header.Set(headerCache, "bypass")
	}
	j := m.GetJob(1)
	defer m.PutJob(j)
	if err := s.runImage(ctx, m, img, &h, j); err != nil {
		return nil, err
	}
	return m.Classes(j.Output(0), k), nil
}

// runImage decodes img into j's input row and runs j through m's
// batcher.
func (s *Server) runImage(ctx *fasthttp.RequestCtx, m *host.Model, img []byte, h *budget.Hold, j *host.Job) error {
	pre := m.Images()
	// What decoding will allocate, from the image's header, reserved
	// before a pixel is decoded.
	need, err := pre.ProcessMemory(img)
	if err != nil {
		return err
	}
	if err := h.Reserve(need, "decoding the image"); err != nil {
		return err
	}
	if err := pre.Process(img, j.OwnInput(0)); err != nil {
		return err
	}
	return s.submit(ctx, m, j)
}

// imageKey is the cache key of an image: the model, its version, the
// image's bytes, and every setting that changes the row it decodes to
// (the preprocessing, the input's datatype and shape). The classify,
// recognize and upload-id paths share it.
func imageKey(m *host.Model, img []byte) respcache.Key {
	pc := m.Images().Config()
	in := m.Inputs()[0]
	h := m.Cache().NewKey("image").String(m.Name).String("1").Bytes(img)
	h.Int(int64(pc.Size)).Int(int64(pc.Resize)).String(pc.Layout).String(pc.DType).String(pc.Resample).
		Bool(pc.JPEGDCTScaling).Int(int64(pc.MaxPixels))
	for c := range 3 {
		h.Float32(pc.Mean[c]).Float32(pc.Std[c])
	}
	return h.String(in.Datatype).Shape(in.Shape).Sum()
}

// maxMultipartHeaders is mime/multipart's own bound on the header bytes of
// a part (maxMIMEHeaderSize).
const maxMultipartHeaders = 10 << 20

// imageBody returns the image bytes of body: the multipart field "image"
// of a multipart/form-data request (copied out, the copy reserved on h),
// else the whole body. With idOK, a multipart field "id" that comes first
// is returned as id instead, with no image.
func imageBody(ctx *fasthttp.RequestCtx, body []byte, h *budget.Hold, idOK bool) (img []byte, id string, err error) {
	if !bytes.HasPrefix(ctx.Request.Header.ContentType(), []byte("multipart/form-data")) {
		if len(body) == 0 {
			return nil, "", httperr.Errorf(http.StatusBadRequest, "empty body: send a JPEG or PNG image as the body or in the multipart field \"image\"")
		}
		return body, "", nil
	}
	boundary := ctx.Request.Header.MultipartFormBoundary()
	if len(boundary) == 0 {
		return nil, "", httperr.Errorf(http.StatusBadRequest, "multipart/form-data without a boundary parameter")
	}
	// The part headers mime/multipart copies out are bounded by the body
	// and by its own 10 MiB header limit: reserved before it reads them.
	if err := h.Reserve(int64(min(len(body), maxMultipartHeaders)), "parsing the multipart body"); err != nil {
		return nil, "", err
	}
	mr := multipart.NewReader(bytes.NewReader(body), string(boundary))
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			if idOK {
				return nil, "", httperr.Errorf(http.StatusBadRequest, "multipart body without the field \"image\" or \"id\"")
			}
			return nil, "", httperr.Errorf(http.StatusBadRequest, "multipart body without the field \"image\"")
		}
		if err != nil {
			return nil, "", httperr.Errorf(http.StatusBadRequest, "malformed multipart body: %v", err)
		}
		if idOK && p.FormName() == "id" {
			b, err := io.ReadAll(io.LimitReader(p, maxID+1))
			if err != nil {
				return nil, "", httperr.Errorf(http.StatusBadRequest, "reading the multipart field \"id\": %v", err)
			}
			return nil, string(b), nil
		}
		if p.FormName() != "image" {
			continue
		}
		// A part is never longer than the body that holds it.
		if err := h.Reserve(int64(len(body)), "the multipart field \"image\""); err != nil {
			return nil, "", err
		}
		img := make([]byte, 0, len(body))
		for {
			n, err := p.Read(img[len(img):cap(img)])
			img = img[:len(img)+n]
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, "", httperr.Errorf(http.StatusBadRequest, "reading the multipart field \"image\": %v", err)
			}
			if len(img) == cap(img) {
				return nil, "", httperr.Errorf(http.StatusBadRequest, "malformed multipart body: the field \"image\" does not end")
			}
		}
		return img, "", nil
	}
}
