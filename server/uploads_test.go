package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"mime/multipart"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/inferd/inferd/config"
)

// solidPNG encodes a w x h image of one colour.
func solidPNG(t testing.TB, w, h int, c color.RGBA) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetRGBA(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// uploadImage posts img to /upload and returns its id.
func uploadImage(t testing.TB, ts *testServer, img []byte) string {
	t.Helper()
	ct, body := multipartImage(t, "image", img)
	r := ts.do(t, "POST", "/upload", ct, body)
	if r.code != 200 {
		t.Fatalf("upload: %d %s", r.code, r.body)
	}
	var v struct{ Message, ID string }
	r.json(t, &v)
	if v.Message != "Image uploaded successfully" || len(v.ID) != 22 {
		t.Fatalf("upload answered %s", r.body)
	}
	return v.ID
}

// multipartID is a multipart body with the field "id".
func multipartID(id string) (string, []byte) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	w.WriteField("id", id)
	w.Close()
	return w.FormDataContentType(), b.Bytes()
}

func recognizeImage(t testing.TB, ts *testServer, img []byte) string {
	t.Helper()
	ct, body := multipartImage(t, "image", img)
	r := ts.do(t, "POST", "/recognize", ct, body)
	if r.code != 200 {
		t.Fatalf("recognize: %d %s", r.code, r.body)
	}
	return string(r.body)
}

func TestUploadThenRecognizeByID(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	img := pngImage(t, 64, 48, 7)
	want := recognizeImage(t, ts, img)
	id := uploadImage(t, ts, img)
	jsonID, _ := json.Marshal(map[string]string{"id": id})
	mct, mbody := multipartID(id)
	for _, c := range []struct {
		name, ct string
		body     []byte
	}{
		{"multipart field", mct, mbody},
		{"urlencoded field", "application/x-www-form-urlencoded", []byte("id=" + id)},
		{"JSON", "application/json", jsonID},
	} {
		r := ts.do(t, "POST", "/recognize", c.ct, c.body)
		if r.code != 200 || string(r.body) != want {
			t.Errorf("%s: %d %s, want %s", c.name, r.code, r.body, want)
		}
	}
	// A second upload of the same image has its own id.
	if id2 := uploadImage(t, ts, img); id2 == id {
		t.Errorf("two uploads share the id %s", id)
	}
}

// TestUploadConcurrentPairs: each client's answer by id is the answer for
// its own image, never another client's.
func TestUploadConcurrentPairs(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	const n = 32
	imgs := make([][]byte, n)
	want := make([]string, n)
	distinct := map[string]bool{}
	for i := range imgs {
		imgs[i] = solidPNG(t, 32, 32, color.RGBA{byte(i * 8), byte(255 - i*8), byte(i * 37), 255})
		want[i] = recognizeImage(t, ts, imgs[i])
		distinct[want[i]] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("the tiny model gives one answer for all %d colours: the test would prove nothing", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ct, body := multipartImage(t, "image", imgs[i])
			r := ts.do(t, "POST", "/upload", ct, body)
			var v struct{ ID string }
			if r.code != 200 || json.Unmarshal(r.body, &v) != nil {
				errs <- fmt.Errorf("pair %d: upload %d %s", i, r.code, r.body)
				return
			}
			jb, _ := json.Marshal(map[string]string{"id": v.ID})
			r = ts.do(t, "POST", "/recognize", "application/json", jb)
			if r.code != 200 || string(r.body) != want[i] {
				errs <- fmt.Errorf("pair %d: recognize by id %d %s, want %s", i, r.code, r.body, want[i])
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestUploadErrors(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Server.Uploads.MaxCount = 2
	}))
	img := pngImage(t, 16, 16, 3)

	ts.do(t, "POST", "/recognize", "application/json", []byte(`{"id":"nope"}`)).wantError(t, 404, `"nope"`)
	ct, body := multipartImage(t, "image", []byte("hello, not a picture"))
	ts.do(t, "POST", "/upload", ct, body).wantError(t, 415, "")
	ts.do(t, "POST", "/upload", "image/png", img).wantError(t, 400, "multipart")
	ts.do(t, "GET", "/upload", "", nil).wantError(t, 405, "POST")

	uploadImage(t, ts, img)
	uploadImage(t, ts, img)
	ct, body = multipartImage(t, "image", img)
	r := ts.do(t, "POST", "/upload", ct, body)
	r.wantError(t, 503, "server.uploads.max_count 2")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

func TestUploadTooLarge(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Server.Uploads.MaxBytes = 100
	}))
	ct, body := multipartImage(t, "image", pngImage(t, 64, 64, 3))
	ts.do(t, "POST", "/upload", ct, body).wantError(t, http.StatusRequestEntityTooLarge, "server.uploads.max_bytes")
}

// TestUploadExpires: after ttl the id is unknown and its memory is given
// back to the budget. The store's clock is the test's.
func TestUploadExpires(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Server.Uploads.TTL = time.Minute
	}))
	var mu sync.Mutex
	now := time.Now()
	ts.uploads.mu.Lock()
	ts.uploads.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ts.uploads.mu.Unlock()
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	id := uploadImage(t, ts, pngImage(t, 16, 16, 3))
	if ts.Budget().Used() == 0 {
		t.Error("a stored upload reserves nothing on the memory budget")
	}
	jb, _ := json.Marshal(map[string]string{"id": id})
	advance(59 * time.Second)
	if r := ts.do(t, "POST", "/recognize", "application/json", jb); r.code != 200 {
		t.Fatalf("recognize by id before the ttl: %d %s", r.code, r.body)
	}
	advance(time.Second)
	ts.do(t, "POST", "/recognize", "application/json", jb).wantError(t, 404, id)
	if n := ts.Budget().Used(); n != 0 {
		t.Errorf("%d bytes still reserved after the upload expired", n)
	}
}
