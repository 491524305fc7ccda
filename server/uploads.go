package server

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/httperr"
)

// uploads keeps the images of POST /upload in memory, never on disk, for
// POST /recognize to classify by id: at most maxCount images and maxBytes
// bytes, each for ttl after its upload. Every image gets its own random
// id, so two clients never see each other's image (the system this
// project grew out of saved every upload to one file). The bytes of each
// image stay reserved on the server's memory budget until it expires, so
// stored uploads and requests share server.memory_limit.
//
// Every image lives for the same ttl, so images expire in upload order:
// order is a FIFO, and expired images are dropped from its front on each
// put and get. One mutex guards it all.
type uploads struct {
	maxCount int
	maxBytes int64
	ttl      time.Duration
	budget   *budget.Budget
	now      func() time.Time

	mu    sync.Mutex
	byID  map[string]*upload
	order []*upload // upload order, which is expiry order
	bytes int64
}

type upload struct {
	id      string
	img     []byte // never written after put: shared with readers
	expires time.Time
	hold    budget.Hold
}

func newUploads(maxCount int, maxBytes int64, ttl time.Duration, b *budget.Budget) *uploads {
	return &uploads{maxCount: maxCount, maxBytes: maxBytes, ttl: ttl, budget: b,
		now: time.Now, byID: map[string]*upload{}}
}

// put stores img (which the caller no longer writes) and returns its id.
// It fails with 413 when img alone is over max_bytes, and with 503 and
// Retry-After when the store is full (count or bytes) or the memory
// budget has no room.
func (u *uploads) put(img []byte) (string, error) {
	n := int64(cap(img))
	if n > u.maxBytes {
		return "", httperr.Errorf(http.StatusRequestEntityTooLarge,
			"image of %d bytes is over server.uploads.max_bytes (%d bytes)", n, u.maxBytes)
	}
	var raw [16]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	e := &upload{id: base64.RawURLEncoding.EncodeToString(raw[:]), img: img, hold: u.budget.Hold()}
	if err := e.hold.Reserve(n, "a stored upload"); err != nil {
		return "", err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	u.expire(now)
	if len(u.order) >= u.maxCount || u.bytes+n > u.maxBytes {
		e.hold.Release()
		wait := u.ttl
		if len(u.order) > 0 {
			wait = u.order[0].expires.Sub(now)
		}
		return "", &httperr.Error{Status: http.StatusServiceUnavailable, RetryAfter: wait,
			Err: fmt.Errorf("upload store full (%d images, %d bytes; server.uploads.max_count %d, max_bytes %d): retry once older uploads expire (ttl %s), or raise the limits",
				len(u.order), u.bytes, u.maxCount, u.maxBytes, u.ttl)}
	}
	e.expires = now.Add(u.ttl)
	u.byID[e.id] = e
	u.order = append(u.order, e)
	u.bytes += n
	return e.id, nil
}

// get returns the image stored under id; 404 when there is none (never
// uploaded, or expired).
func (u *uploads) get(id string) ([]byte, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.expire(u.now())
	if e := u.byID[id]; e != nil {
		return e.img, nil
	}
	if len(id) > 64 {
		id = id[:64] + "..."
	}
	return nil, httperr.Errorf(http.StatusNotFound,
		"no uploaded image with id %q: it was never uploaded or has expired (server.uploads.ttl %s); POST /upload it again", id, u.ttl)
}

// expire drops the images whose time is up, giving back their memory.
// The caller holds u.mu.
func (u *uploads) expire(now time.Time) {
	i := 0
	for ; i < len(u.order) && !now.Before(u.order[i].expires); i++ {
		e := u.order[i]
		delete(u.byID, e.id)
		u.bytes -= int64(cap(e.img))
		e.hold.Release()
		u.order[i] = nil
	}
	if i > 0 {
		u.order = u.order[i:]
		if len(u.order) == 0 {
			u.order = u.order[:0:0] // let the backing array go
		}
	}
}

// maxID bounds an id a request sends; ours are 22 characters.
const maxID = 256

// upload serves POST /upload: the multipart field "image", as the
// original form sent it. The image is checked to be one the default model
// can decode (its header, as predict checks it: 415 when it is not), kept
// by uploads and answered {"message":"Image uploaded successfully","id":..}.
func (s *Server) upload(ctx *fasthttp.RequestCtx, name string) {
	m := s.models.Acquire(name)
	if m == nil {
		writeError(ctx, httperr.Errorf(http.StatusServiceUnavailable, "no model loaded yet"))
		return
	}
	defer m.Release()
	if !bytes.HasPrefix(ctx.Request.Header.ContentType(), []byte("multipart/form-data")) {
		writeError(ctx, httperr.Errorf(http.StatusBadRequest, "want a multipart/form-data body with the image in the field \"image\""))
		return
	}
	pre := m.Images()
	if pre == nil {
		writeError(ctx, httperr.Errorf(http.StatusBadRequest, "model %q does not take images (inputs: %s)", m.Name, tensorNames(m.Inputs())))
		return
	}
	h := s.budget.Hold()
	defer h.Release()
	b, err := s.readBody(ctx, &h, s.cfg.Server.MaxBodyBytes)
	defer b.release()
	if err != nil {
		writeError(ctx, err)
		return
	}
	// A multipart image is always a copy, never the pooled body buffer.
	img, _, err := imageBody(ctx, b.b, &h, false)
	if err == nil {
		_, err = pre.ProcessMemory(img)
	}
	var id string
	if err == nil {
		id, err = s.uploads.put(img)
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, `{"message":"Image uploaded successfully","id":"`+id+`"}`)
}

// idType is the kind of body that can carry only an id ("form" or
// "json"), from the Content-Type; "" for any other.
func idType(ctx *fasthttp.RequestCtx) string {
	ct := ctx.Request.Header.ContentType()
	switch {
	case bytes.HasPrefix(ct, []byte("application/x-www-form-urlencoded")):
		return "form"
	case bytes.HasPrefix(ct, []byte("application/json")):
		return "json"
	}
	return ""
}

// recognizeImage returns the image of a POST /recognize body: the
// multipart field "image", or the stored upload its id names (the
// multipart or form field "id", or JSON {"id": ...}).
func (s *Server) recognizeImage(ctx *fasthttp.RequestCtx, body []byte, h *budget.Hold) ([]byte, error) {
	var id string
	switch idType(ctx) {
	case "form":
		var a fasthttp.Args
		a.ParseBytes(body)
		id = string(a.Peek("id"))
	case "json":
		var v struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, httperr.Errorf(http.StatusBadRequest, "JSON body: %v; want {\"id\": \"...\"}", err)
		}
		id = v.ID
	default:
		img, mid, err := imageBody(ctx, body, h, true)
		if err != nil || img != nil {
			return img, err
		}
		id = mid
	}
	if id == "" {
		return nil, httperr.Errorf(http.StatusBadRequest, "no id: send the id POST /upload answered (form field \"id\" or JSON {\"id\": ...}), or the image")
	}
	if len(id) > maxID {
		return nil, httperr.Errorf(http.StatusBadRequest, "id longer than %d bytes", maxID)
	}
	return s.uploads.get(id)
}
