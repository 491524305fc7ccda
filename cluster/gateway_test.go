package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferd/inferd/internal/testbed"
)

// The gateway in HAProxy (configs/haproxy.cfg, cmd/inferd-keys) on one
// small cluster, over TLS with the CA scripts/cluster.sh makes: keys,
// model fences, rate and concurrency limits, revocation under load and
// across a restart, TLS versions, bad input and a flood of bad keys, and
// a forged tenant header.
func TestGateway(t *testing.T) {
	g := newGateway(t, 2)
	img := testImage()

	// Tenants: "full" may use every model, unlimited; "tinyonly" the tiny
	// model by name at 50/s; "prefix" models named ti... at 50/s; "fenced"
	// only res... and "other", so not tiny; "slow" every model at 10/s;
	// "steady" tiny at 200/s, the valid load beside every abuse; "narrow"
	// two requests in flight at most.
	full := g.addKey("full", "-models", "*", "-rate", "0")
	tinyOnly := g.addKey("tinyonly", "-models", "tiny", "-rate", "50")
	prefix := g.addKey("prefix", "-models", "ti*", "-rate", "50")
	fenced := g.addKey("fenced", "-models", "res*,other", "-rate", "50")
	slow := g.addKey("slow", "-models", "*", "-rate", "10")
	steady := g.addKey("steady", "-models", "tiny", "-rate", "200")
	narrow := g.addKey("narrow", "-models", "*", "-rate", "0", "-concurrency", "2")

	t.Run("keys-on-disk", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(g.gwDir, "keys.map"))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{full, tinyOnly, slow} {
			if strings.Contains(string(b), k) || strings.Contains(string(b), strings.TrimPrefix(k, "ik_")) {
				t.Errorf("keys.map holds a key in clear")
			}
		}
		list := g.keys("list")
		if !strings.Contains(list, "haproxy: in sync") || !strings.Contains(list, "tenant slow: models *, rate 10/s") {
			t.Errorf("inferd-keys list:\n%s", list)
		}
	})

	t.Run("401", func(t *testing.T) {
		wantError(t, "no key", g.get(""), 401, "missing API key: send Authorization: Bearer KEY or X-API-Key: KEY")
		wantError(t, "unknown key", g.get("ik_"+strings.Repeat("A", 43)), 401, "unknown API key")
		wantError(t, "basic auth", g.do(nil, "GET", "/v2/models/tiny", nil, "Authorization", "Basic dXNlcjpwYXNz"), 401, "missing API key")
		wantError(t, "key in X-API-Key, unknown", g.do(nil, "GET", "/v2/models/tiny", nil, "X-API-Key", "nope"), 401, "unknown API key")
		// Health checks need no key; other routes do.
		if a := g.do(nil, "GET", "/v2/health/ready", nil); a.status != 200 {
			t.Errorf("/v2/health/ready without a key: %v", a)
		}
		wantError(t, "/v2 without a key", g.do(nil, "GET", "/v2", nil), 401, "missing API key")
		wantError(t, "/metrics without a key", g.do(nil, "GET", "/metrics", nil), 401, "missing API key")
	})

	t.Run("200", func(t *testing.T) {
		for _, c := range []struct {
			what string
			hdr  []string
		}{
			{"bearer", []string{"Authorization", "Bearer " + full}},
			{"bearer, scheme in lowercase and spaces", []string{"Authorization", "bearer   " + full + "  "}},
			{"x-api-key", []string{"X-API-Key", full}},
		} {
			a := g.do(nil, "POST", "/v2/models/tiny/classify", img, append(c.hdr, "Content-Type", "image/png")...)
			if a.status != 200 || a.header.Get("X-Inferd-Replica") == "" {
				t.Errorf("%s: %v (replica %q)", c.what, a, a.header.Get("X-Inferd-Replica"))
			}
		}
	})

	t.Run("403", func(t *testing.T) {
		wantError(t, "fenced tenant on tiny", g.classify(nil, fenced, img), 403, `model "tiny" is not allowed for this key`)
		wantError(t, "fenced tenant, metadata", g.get(fenced), 403, `model "tiny" is not allowed for this key`)
		a := g.get(fenced)
		if strings.Contains(string(a.body), "res") || strings.Contains(string(a.body), "other") {
			t.Errorf("403 names the allowed models: %s", a.body)
		}
		wantError(t, "tiny-only tenant on another model", g.do(nil, "GET", "/v2/models/tinyx", nil, "Authorization", "Bearer "+tinyOnly), 403, `model "tinyx" is not allowed`)
		wantError(t, "tiny-only tenant on /recognize", g.do(nil, "POST", "/recognize", img, "Authorization", "Bearer "+tinyOnly), 403, "/recognize")
		if a := g.do(nil, "POST", "/recognize", img, "Authorization", "Bearer "+full, "Content-Type", "image/png"); a.status == 401 || a.status == 403 || a.header.Get("X-Inferd-Replica") == "" {
			t.Errorf("a tenant allowed every model on /recognize: %v, want it through to a replica", a)
		}
		wantError(t, "tiny-only tenant on all statistics", g.do(nil, "GET", "/v2/models/stats", nil, "Authorization", "Bearer "+tinyOnly), 403, `model "stats"`)
		for _, c := range []struct {
			what, key string
		}{{"by name", tinyOnly}, {"by prefix", prefix}, {"everything", full}} {
			if a := g.classify(nil, c.key, img); a.status != 200 {
				t.Errorf("allowed %s: %v", c.what, a)
			}
		}
		// A name the gateway cannot read the way inferd does is refused
		// before any key is looked at.
		for _, p := range []string{"/v2/models/%74iny/infer", "/v2/health/../models/tiny", "//v2/models/tiny", "/v2/models/./tiny"} {
			st, body, _ := g.rawTLS([]byte("GET " + p + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + fenced + "\r\nConnection: close\r\n\r\n"))
			if st != 400 || !strings.Contains(body, "canonical") {
				t.Errorf("GET %s: %d %s, want 400", p, st, body)
			}
		}
	})

	t.Run("429-rate", func(t *testing.T) {
		// "slow" sends 4x its 10/s for 4s while "steady" sends 20/s of its
		// 200/s: slow gets 429s and still its 10/s; steady loses nothing.
		const limit, d = 10, 4 * time.Second
		var over, ok *paced
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok = pace(context.Background(), 20, d, 4, func() answer { return g.get(steady) }, only200)
		}()
		over = pace(context.Background(), 4*limit, d, 8, func() answer { return g.get(slow) }, func(a answer) string {
			switch a.status {
			case 200:
			case 429:
				if a.header.Get("Retry-After") != "1" || !strings.Contains(string(a.body), "rate limit of 10 requests/s exceeded for this key") {
					return "429 without Retry-After 1 or the message: " + a.String()
				}
			default:
				return a.String()
			}
			return ""
		})
		wg.Wait()
		t.Logf("over its rate: %s", over)
		t.Logf("within its rate: %s", ok)
		if over.sent.Load() < int64(2.5*limit*d.Seconds()) {
			t.Fatalf("the client sent %d requests in %s: too few to exceed the rate (host too busy?)", over.sent.Load(), d)
		}
		served, refused := over.count(200), over.count(429)
		if refused == 0 || served+refused != over.total() {
			t.Errorf("over its rate: %s; want 200s and 429s only", over)
		}
		// The allowed rate is served in full: at least 80% of limit x
		// duration, and not much more than limit x (duration + 1 window).
		if lo, hi := int(0.8*limit*d.Seconds()), int(1.3*limit*(d.Seconds()+1)); served < lo || served > hi {
			t.Errorf("over its rate: %d served, want %d..%d", served, lo, hi)
		}
		if ok.count(200) != ok.total() || ok.total() == 0 {
			t.Errorf("within its rate: %s, want only 200s", ok)
		}
		// Still over it, at once: one of a burst of 5 is refused.
		refusedNow := false
		for range 5 {
			if a := g.get(slow); a.status == 429 {
				wantError(t, "slow, at once after", a, 429, "rate limit of 10 requests/s")
				refusedNow = true
				break
			}
		}
		if !refusedNow {
			t.Error("5 requests at once after the load: none refused")
		}
	})

	t.Run("429-concurrency", func(t *testing.T) {
		// Two requests of "narrow" held in flight: their headers sent,
		// their bodies not (HAProxy waits for a body before it forwards).
		var conns []*tls.Conn
		for range 2 {
			c, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(g.hap.tlsPort), &tls.Config{RootCAs: g.ca, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /v2/models/tiny/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n", narrow, len(img))
			conns = append(conns, c)
		}
		if _, ok := testbed.WaitFor(5*time.Second, func() bool {
			return strings.Contains(tenantEntry(g.hap.sock(), "narrow"), "conn_cur=2 ")
		}); !ok {
			t.Fatalf("HAProxy does not count 2 requests in flight for narrow: %q", tenantEntry(g.hap.sock(), "narrow"))
		}
		wantError(t, "a third request in flight", g.get(narrow), 429, "concurrency limit of 2 requests in flight exceeded for this key")
		if a := g.get(full); a.status != 200 {
			t.Errorf("another tenant meanwhile: %v", a)
		}
		for _, c := range conns {
			c.Write(img)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("held request: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
		}
		if _, ok := testbed.WaitFor(5*time.Second, func() bool { return g.get(narrow).status == 200 }); !ok {
			t.Errorf("narrow still refused after its requests ended: %q", tenantEntry(g.hap.sock(), "narrow"))
		}
	})

	t.Run("tls", func(t *testing.T) {
		addr := "127.0.0.1:" + strconv.Itoa(g.hap.tlsPort)
		dial := func(cfg *tls.Config) (*tls.Conn, error) {
			cfg.RootCAs = g.ca
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
			if err == nil {
				c.Close()
			}
			return c, err
		}
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			_, err := dial(&tls.Config{MinVersion: v, MaxVersion: v})
			if err == nil || !strings.Contains(err.Error(), "protocol version") {
				t.Errorf("%s handshake: %v, want a protocol version alert", tls.VersionName(v), err)
			}
		}
		c, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("TLS 1.2: %v", err)
		}
		if cs := c.ConnectionState(); !strings.Contains(tls.CipherSuiteName(cs.CipherSuite), "ECDHE") || !strings.Contains(tls.CipherSuiteName(cs.CipherSuite), "GCM") && !strings.Contains(tls.CipherSuiteName(cs.CipherSuite), "CHACHA20") {
			t.Errorf("TLS 1.2 cipher %s: want ECDHE with an AEAD", tls.CipherSuiteName(cs.CipherSuite))
		}
		// CBC suites (no AEAD) are refused even in TLS 1.2.
		if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}}); err == nil {
			t.Error("TLS 1.2 with CBC suites only: handshake succeeded")
		}
		c, err = dial(&tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatalf("TLS 1.3: %v", err)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Errorf("ALPN h2,http/1.1 -> %q, want h2", p)
		}
		if _, err := tls.Dial("tcp", addr, &tls.Config{}); err == nil || !errors.As(err, new(*tls.CertificateVerificationError)) {
			t.Errorf("a client without the cluster's CA: %v, want a verification error", err)
		}
		// HTTP/2 through to the replicas (HTTP/1.1 behind HAProxy).
		h2 := &http.Client{Timeout: requestLimit, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.ca}, ForceAttemptHTTP2: true}}
		if a := g.classify(h2, full, img); a.status != 200 || a.proto != 2 {
			t.Errorf("classify over HTTP/2: %v (HTTP/%d)", a, a.proto)
		}
		wantError(t, "HTTP/2 without a key", g.do(h2, "GET", "/v2/models/tiny", nil), 401, "missing API key")
	})

	t.Run("revoke-under-load", func(t *testing.T) {
		// A load of valid requests (tenant full, its own key) runs across
		// the revocation of another key and the addition of a third: the
		// revoked key is refused within 1s, the new one served within 1s,
		// and the load loses nothing (no reload, no dropped connection).
		victim := g.addKey("full")
		loadKey := g.addKey("full")
		if a := g.get(victim); a.status != 200 {
			t.Fatalf("victim key before the revoke: %v", a)
		}
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		var load *paced
		loaded := make(chan struct{})
		go func() {
			defer close(loaded)
			load = pace(ctx, 100, 30*time.Second, 8, func() answer { return g.classify(nil, loadKey, img) }, only200)
		}()
		time.Sleep(time.Second)

		type probeResult struct {
			refused time.Time
			odd     []string
		}
		probe := make(chan probeResult, 1)
		go func() {
			var r probeResult
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				a := g.get(victim)
				if a.status == 401 {
					r.refused = time.Now()
					break
				}
				if a.status != 200 && len(r.odd) < 5 {
					r.odd = append(r.odd, a.String())
				}
			}
			probe <- r
		}()
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		out := g.keys("revoke", keyID(victim))
		cmdTook := time.Since(start)
		r := <-probe
		if r.refused.IsZero() {
			t.Fatalf("the revoked key is still served 10s after inferd-keys revoke (%q); odd answers %v", out, r.odd)
		}
		refusedAfter := r.refused.Sub(start)
		if refusedAfter > time.Second {
			t.Errorf("revoked key refused %s after the command started, want within 1s", refusedAfter)
		}
		if len(r.odd) > 0 {
			t.Errorf("victim probe saw %v", r.odd)
		}
		for range 5 {
			wantError(t, "revoked key", g.get(victim), 401, "unknown API key")
		}

		start = time.Now()
		added := g.addKey("full")
		took, ok := testbed.WaitFor(time.Second, func() bool { return g.get(added).status == 200 })
		if !ok {
			t.Errorf("a key added while serving is not served %s after inferd-keys add", took)
		}
		addedAfter := time.Since(start)

		time.Sleep(time.Second)
		stop()
		<-loaded
		t.Logf("FIGURE revoke under load: the command took %s, the key was refused %s after it started; a key added was served %s after its command started; load %s",
			cmdTook.Round(time.Millisecond), refusedAfter.Round(time.Millisecond), addedAfter.Round(time.Millisecond), load)
		if load.count(200) != load.total() || load.total() < 100 {
			t.Errorf("load across the revoke: %s, want only 200s", load)
		}

		// The files alone carry the changes across a restart.
		g.restartHAProxy(g.hap)
		wantError(t, "revoked key after a restart", g.get(victim), 401, "unknown API key")
		for _, k := range []string{loadKey, added, full} {
			if a := g.get(k); a.status != 200 {
				t.Errorf("a valid key after a restart: %v", a)
			}
		}
		// Revoking by the key itself works too.
		g.keys("revoke", added)
		wantError(t, "key revoked by itself", g.get(added), 401, "unknown API key")
		if list := g.keys("list"); !strings.Contains(list, "haproxy: in sync") {
			t.Errorf("after the restart and a revoke, inferd-keys list says:\n%s", list)
		}
	})

	t.Run("bad-input", func(t *testing.T) {
		// A valid tenant keeps its rate, undisturbed, throughout.
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		var valid *paced
		validDone := make(chan struct{})
		go func() {
			defer close(validDone)
			valid = pace(ctx, 20, time.Minute, 4, func() answer { return g.get(steady) }, only200)
		}()

		big := strings.Repeat("A", 64<<10)
		huge := strings.Repeat("A", 2<<20)
		for _, c := range []struct {
			what, hdr string
			want      int // 0: any 4xx, or the connection closed
		}{
			{"bearer without a key", "Authorization: Bearer", 401},
			{"bearer and two words", "Authorization: Bearer " + full + " more", 401},
			{"a list of bearer tokens", "Authorization: Bearer " + full + ", Bearer " + full, 401},
			{"two Authorization headers", "Authorization: Bearer " + full + "\r\nAuthorization: Bearer " + full, 400},
			{"two X-API-Key headers", "X-API-Key: " + full + "\r\nX-API-Key: " + full, 400},
			{"a 64 KiB key", "Authorization: Bearer ik_" + big, 401},
			{"a 2 MiB key (over HAProxy's 1 MiB buffer)", "X-API-Key: ik_" + huge, 0},
			{"bytes over 0x7f", "X-API-Key: ik_\xff\xfe\x80\xc3\xa9", 401},
			{"a valid key and one byte more", "X-API-Key: " + full + "\xff", 401},
			{"a control byte", "X-API-Key: ik_\x01abc", 0},
			{"a NUL byte", "X-API-Key: ik_\x00abc", 0},
			{"a forged tenant and no key", "X-Inferd-Tenant: full", 401},
		} {
			req := "GET /v2/models/tiny HTTP/1.1\r\nHost: x\r\n" + c.hdr + "\r\nConnection: close\r\n\r\n"
			st, body, closed := g.rawTLS([]byte(req))
			switch {
			case c.want == 0 && (closed || st >= 400 && st < 500):
			case c.want != 0 && st == c.want:
			default:
				t.Errorf("%s: %d %.200s (closed %v), want %d", c.what, st, body, closed, c.want)
			}
		}

		// TLS clients that never finish their handshake: some send nothing,
		// some the start of a ClientHello. The gateway still serves.
		var idle []net.Conn
		for i := range 100 {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(g.hap.tlsPort), 5*time.Second)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			if i%2 == 1 {
				c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
			}
			idle = append(idle, c)
		}
		fresh := &http.Client{Timeout: requestLimit, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: g.ca}, DisableKeepAlives: true}}
		for range 5 {
			if a := g.do(fresh, "GET", "/v2/models/tiny", nil, "Authorization", "Bearer "+full); a.status != 200 {
				t.Errorf("a new client beside 100 unfinished handshakes: %v", a)
			}
		}
		for _, c := range idle {
			c.Close()
		}
		time.Sleep(time.Second)
		stop()
		<-validDone
		if valid.count(200) != valid.total() || valid.total() < 10 {
			t.Errorf("valid tenant during the bad input: %s", valid)
		}
	})

	t.Run("10000-bad-keys", func(t *testing.T) {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		var valid *paced
		validDone := make(chan struct{})
		go func() {
			defer close(validDone)
			valid = pace(ctx, 20, time.Minute, 4, func() answer { return g.get(steady) }, only200)
		}()
		pid := g.hap.proc.Pid()
		send := func(n int) (odd []string) {
			var mu sync.Mutex
			var wg sync.WaitGroup
			next := make(chan struct{})
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						a := g.get(randomKey())
						if a.status != 401 {
							mu.Lock()
							odd = append(odd, a.String())
							mu.Unlock()
						}
					}
				}()
			}
			for range n {
				next <- struct{}{}
			}
			close(next)
			wg.Wait()
			return odd
		}
		// HAProxy caches pattern lookups (tune.pattern.cache-size: 10,000
		// entries per thread, invalidated by any map change): the first
		// 10,000 distinct keys per thread fill it, about 0.7 KiB each, and
		// then it stays that size. So that many keys and 5,000 more first,
		// then the 10,000 measured.
		warm := 10000*hapThreads(g.hap.sock()) + 5000
		rssStart := testbed.ProcStatus(pid, "VmRSS")
		send(warm)
		rss0 := testbed.ProcStatus(pid, "VmRSS")
		start := time.Now()
		odd := send(10000)
		took := time.Since(start)
		rss1 := testbed.ProcStatus(pid, "VmRSS")
		stop()
		<-validDone
		t.Logf("FIGURE 10,000 random keys in %s (%.0f/s), all 401: %v; HAProxy RSS %.1f MiB before any, %.1f after %d, %.1f after 10,000 more; stick table %d entries; valid tenant meanwhile %s",
			took.Round(time.Millisecond), 10000/took.Seconds(), len(odd) == 0, float64(rssStart)/(1<<20), float64(rss0)/(1<<20), warm, float64(rss1)/(1<<20), tableUsed(g.hap.sock()), valid)
		if len(odd) > 0 {
			t.Errorf("%d random keys not answered 401, e.g. %v", len(odd), odd[:min(len(odd), 3)])
		}
		if rss0 == 0 || rss1-rss0 > 2<<20 || rss0-rssStart > int64(warm)<<10+8<<20 {
			t.Errorf("HAProxy RSS %.1f MiB, %.1f after %d bad keys, %.1f after 10,000 more: want under 1 KiB a key + 8 MiB for the first (the lookup cache) and 2 MiB for the rest",
				float64(rssStart)/(1<<20), float64(rss0)/(1<<20), warm, float64(rss1)/(1<<20))
		}
		if n := tableUsed(g.hap.sock()); n < 0 || n > 8 {
			t.Errorf("stick table has %d entries, want at most one per tenant (8)", n)
		}
		if valid.count(200) != valid.total() || valid.total() < 10 {
			t.Errorf("valid tenant during the flood: %s", valid)
		}
	})

	// Last: it adds a backend that is not inferd.
	t.Run("forged-tenant", func(t *testing.T) {
		// A backend that echoes the headers it got, registered in Consul
		// as one more replica.
		echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Inferd-Replica", "echo")
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(r.Header)
		}))
		defer echo.Close()
		port := echo.Listener.Addr().(*net.TCPAddr).Port
		reg := fmt.Sprintf(`{"ID":"echo","Name":"inferd","Address":"127.0.0.1","Port":%d}`, port)
		req, _ := http.NewRequest("PUT", g.consul.URL("/v1/agent/service/register"), strings.NewReader(reg))
		if resp, err := probe.Do(req); err != nil || resp.StatusCode != 200 {
			t.Fatalf("registering the echo backend: %v %v", resp, err)
		}
		defer func() {
			req, _ := http.NewRequest("PUT", g.consul.URL("/v1/agent/service/deregister/echo"), nil)
			if resp, err := probe.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		if took, ok := testbed.WaitFor(20*time.Second, func() bool {
			s, _ := hapServers(g.hap.sock(), "inferd")
			for _, x := range s {
				if x.port == port && x.up() {
					return true
				}
			}
			return false
		}); !ok {
			t.Fatalf("HAProxy has not the echo backend up after %s", took)
		}
		seen := func(path string, hdr ...string) http.Header {
			for range 100 {
				a := g.do(nil, "GET", path, nil, hdr...)
				if a.header.Get("X-Inferd-Replica") == "echo" {
					var h http.Header
					if err := json.Unmarshal(a.body, &h); err != nil {
						t.Fatalf("echo: %s: %v", a.body, err)
					}
					return h
				}
			}
			t.Fatalf("100 requests to %s and none reached the echo backend", path)
			return nil
		}
		h := seen("/v2/models/tiny", "Authorization", "Bearer "+tinyOnly, "X-API-Key", "ik_other",
			"X-Inferd-Tenant", "full", "x-inferd-tenant", "admin")
		if got := h.Values("X-Inferd-Tenant"); len(got) != 1 || got[0] != "tinyonly" {
			t.Errorf("the replica got X-Inferd-Tenant %q, want [tinyonly] whatever the client sent", got)
		}
		if h.Get("Authorization") != "" || h.Get("X-Api-Key") != "" {
			t.Errorf("the replica got the client's credentials: %v", h)
		}
		h = seen("/v2/health/ready", "X-Inferd-Tenant", "full")
		if got := h.Values("X-Inferd-Tenant"); len(got) != 0 {
			t.Errorf("a health check reached the replica with X-Inferd-Tenant %q, want none", got)
		}
	})
}

// keyID is the ID inferd-keys lists for key: its hash's first 12 digits.
func keyID(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])[:12]
}

func randomKey() string {
	var b [32]byte
	rand.Read(b[:])
	return "ik_" + base64.RawURLEncoding.EncodeToString(b[:])
}
