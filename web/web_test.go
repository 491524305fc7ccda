package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"regexp"
	"strings"
	"testing"
)

// Every asset is named by the page with its version, has its media type,
// and its gzipped copy is the file.
func TestFiles(t *testing.T) {
	idx := Index()
	if idx.ContentType != "text/html; charset=utf-8" || len(idx.Gzip) == 0 {
		t.Errorf("index.html: %q, %d bytes gzipped", idx.ContentType, len(idx.Gzip))
	}
	types := map[string]string{
		"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml",
	}
	names := Names()
	if len(names) != len(types) {
		t.Errorf("assets %q, want %d", names, len(types))
	}
	for _, name := range names {
		f, ok := Lookup(name)
		if !ok || f.Name != name || f.ContentType != types[name] {
			t.Errorf("%s: %+v", name, f)
			continue
		}
		if !bytes.Contains(idx.Body, []byte(`"`+Prefix+name+"?v="+f.Version+`"`)) {
			t.Errorf("index.html does not ask for %s%s?v=%s", Prefix, name, f.Version)
		}
		if f.ETag != `"`+f.Version+`"` || len(f.Version) != 16 {
			t.Errorf("%s: ETag %s, version %s", name, f.ETag, f.Version)
		}
		if f.Gzip != nil {
			zr, err := gzip.NewReader(bytes.NewReader(f.Gzip))
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(zr); !bytes.Equal(b, f.Body) {
				t.Errorf("%s: the gzipped copy differs", name)
			}
		}
	}
	if _, ok := Lookup("index.html"); ok {
		t.Error("index.html is an asset too: it is served at / only")
	}
	if _, ok := Lookup("../web.go"); ok {
		t.Error("a path out of static/ is served")
	}
}

// Nothing is loaded from another origin: no URL with a scheme or a host
// in the files (the SVG namespace names, it loads nothing), no inline
// script or style the CSP would block.
func TestSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	files := map[string][]byte{"index.html": Index().Body}
	for _, name := range Names() {
		f, _ := Lookup(name)
		files[name] = f.Body
	}
	for name, b := range files {
		for _, m := range external.FindAll(b, -1) {
			if string(m) != "http://www.w3.org" {
				t.Errorf("%s names %s", name, m)
			}
		}
	}
	html := string(Index().Body)
	if strings.Contains(html, "<script>") || strings.Contains(html, "<style") || strings.Contains(html, " style=") || regexp.MustCompile(` on[a-z]+=`).MatchString(html) {
		t.Error("index.html has an inline script, style or handler: the Content-Security-Policy blocks them")
	}
	if !strings.Contains(ContentSecurityPolicy, "script-src 'self'") || strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Errorf("CSP %q", ContentSecurityPolicy)
	}
}
