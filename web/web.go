// Package web is inferd's web page: a classify view (pick, drop or paste
// an image, see its top-k labels, the server's queue and compute time and
// the replica that answered) and a status view (per model request rate,
// p50/p99, mean batch size, queue depth and device, with a latency
// sparkline and a batch-size histogram), refreshed from GET /v2/ui/status.
//
// The files are plain HTML, CSS and JavaScript embedded in the binary: no
// build step, no framework, nothing fetched from another origin. The page
// holds no secret, so it is served without an API key; every request it
// makes sends the key the person typed once (kept in localStorage).
//
// The package knows nothing of HTTP servers: Index and Lookup hand out the
// files with what a server needs to send them (type, ETag, a precompressed
// copy); package server serves them at / and /ui/NAME.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"path"
	"slices"
	"strings"
)

// Prefix is the path the assets are served under: /ui/NAME.
const Prefix = "/ui/"

// ContentSecurityPolicy is the policy the page is served with: scripts,
// styles and requests to its own origin only (the page needs no CDN, and
// an injected script could not run), images also from the blob: URLs of
// the previews and the data: favicon.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed static
var static embed.FS

// File is one file of the page, ready to send.
type File struct {
	// Name is the file's name under Prefix ("app.js"), "index.html" for
	// the page itself.
	Name string
	// ContentType is its media type, with charset for text.
	ContentType string
	// Body is its bytes.
	Body []byte
	// Gzip is Body gzipped once at startup; nil when that is no smaller.
	Gzip []byte
	// ETag is a strong entity tag from a hash of Body, quoted.
	ETag string
	// Version is the first 16 hex digits of that hash: index.html asks
	// for the assets as /ui/NAME?v=VERSION, so a response for that URL
	// may be cached for good (Cache-Control immutable).
	Version string
}

var (
	index  *File
	assets = map[string]*File{}
)

func init() {
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		if name != "index.html" {
			assets[name] = newFile(name, b)
		}
		return nil
	})
	if err != nil {
		panic("web: reading the embedded files: " + err.Error())
	}
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		panic("web: reading the embedded files: " + err.Error())
	}
	// The page names each asset with its version, so that browsers may
	// keep the asset until the binary changes it.
	for _, name := range Names() {
		ref := []byte(`"` + Prefix + name + `"`)
		if !bytes.Contains(b, ref) {
			continue
		}
		b = bytes.ReplaceAll(b, ref, []byte(`"`+Prefix+name+"?v="+assets[name].Version+`"`))
	}
	index = newFile("index.html", b)
}

func newFile(name string, b []byte) *File {
	sum := sha256.Sum256(b)
	v := hex.EncodeToString(sum[:8])
	ct := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) { // not left to the host's mime.types
	case ".html":
		ct = "text/html; charset=utf-8"
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	case ".svg":
		ct = "image/svg+xml"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	f := &File{Name: name, ContentType: ct, Body: b, ETag: `"` + v + `"`, Version: v}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	if buf.Len() < len(b) {
		f.Gzip = buf.Bytes()
	}
	return f
}

// Index returns the page: index.html, its asset URLs carrying their
// versions.
func Index() *File { return index }

// Lookup returns the asset served at Prefix+name, or false when there is
// none.
func Lookup(name string) (*File, bool) {
	f, ok := assets[name]
	return f, ok
}

// Names returns the assets' names under Prefix, sorted.
func Names() []string {
	names := make([]string, 0, len(assets))
	for n := range assets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
