package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inferd/inferd/internal/testbed"
)

// repoRoot is the checkout.
var repoRoot = testbed.RepoRoot()

var probe = &http.Client{Timeout: 2 * time.Second}

// httpOK reports whether GET url answers 200.
func httpOK(url string) bool {
	resp, err := probe.Get(url)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 200
}

func getJSON(url string, v any) error {
	resp, err := probe.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// testImage is a small PNG the classify endpoint resizes and crops.
func testImage() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), 128, 255})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

// loadGen sends classify requests through HAProxy at a fixed rate from a
// few workers (a tick with every worker busy is skipped), until stopped, a
// deadline or a request cap. The rate is modest so that the packages tested
// beside this one keep their share of the 2 cores.
type loadGen struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	byReplica  map[string]int
	errs       []string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	start      time.Time
	took       time.Duration
}

// Bounds of any one load run.
const (
	loadWorkers  = 8
	loadRate     = 200 // requests per second
	loadMaxReqs  = 100_000
	loadMaxTime  = 60 * time.Second
	requestLimit = 10 * time.Second
)

func startLoad(url string, body []byte) *loadGen {
	ctx, cancel := context.WithTimeout(context.Background(), loadMaxTime)
	g := &loadGen{byReplica: map[string]int{}, cancel: cancel, start: time.Now()}
	client := &http.Client{
		Timeout:   requestLimit,
		Transport: &http.Transport{MaxIdleConnsPerHost: loadWorkers, DisableCompression: true},
	}
	ticks := make(chan struct{})
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(ticks)
		t := time.NewTicker(time.Second / loadRate)
		defer t.Stop()
		for sent := 0; sent < loadMaxReqs; {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case ticks <- struct{}{}:
					sent++
				default: // every worker busy: skip this tick
				}
			}
		}
	}()
	for range loadWorkers {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			for range ticks {
				g.one(ctx, client, url, body)
			}
		}()
	}
	return g
}

func (g *loadGen) one(ctx context.Context, c *http.Client, url string, body []byte) {
	req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "image/png")
	resp, err := c.Do(req)
	if ctx.Err() != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return // stopped: not a failure
	}
	var why string
	replica := ""
	if err != nil {
		why = err.Error()
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		replica = resp.Header.Get("X-Inferd-Replica")
		if resp.StatusCode != 200 {
			why = fmt.Sprintf("%s from %q: %.200s", resp.Status, replica, b)
		}
	}
	if why == "" {
		g.ok.Add(1)
	} else {
		g.failed.Add(1)
	}
	g.mu.Lock()
	if why == "" {
		g.byReplica[replica]++
	} else if len(g.errs) < 20 {
		g.errs = append(g.errs, time.Since(g.start).Round(time.Millisecond).String()+": "+why)
	}
	g.mu.Unlock()
}

// stop ends the run and waits for the workers.
func (g *loadGen) stop() {
	g.cancel()
	g.wg.Wait()
	g.took = time.Since(g.start)
}

func (g *loadGen) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return fmt.Sprintf("%d ok, %d failed in %s (%.0f req/s), by replica %v",
		g.ok.Load(), g.failed.Load(), g.took.Round(time.Millisecond),
		float64(g.ok.Load()+g.failed.Load())/g.took.Seconds(), g.byReplica)
}

// hapServer is one line of HAProxy's `show servers state`.
type hapServer struct {
	name         string
	addr         string
	port         int
	opState      int // 0 stopped, 1 starting, 2 running, 3 stopping
	adminState   int // bit flags; 0x23 maintenance, 0x18 drain
	sessionsCurr int // from show stat
}

func (s hapServer) up() bool { return s.opState == 2 && s.adminState&0x3b == 0 }

// hapCommand runs one HAProxy Runtime API command over its socket.
func hapCommand(sock, cmd string) (string, error) {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// hapServers lists the backend's servers with an address.
func hapServers(sock, backend string) ([]hapServer, error) {
	out, err := hapCommand(sock, "show servers state "+backend)
	if err != nil {
		return nil, err
	}
	var list []hapServer
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 19 || strings.HasPrefix(f[0], "#") || f[4] == "-" {
			continue
		}
		op, _ := strconv.Atoi(f[5])
		adm, _ := strconv.Atoi(f[6])
		port, _ := strconv.Atoi(f[18])
		list = append(list, hapServer{name: f[3], addr: f[4], port: port, opState: op, adminState: adm})
	}
	stat, err := hapCommand(sock, "show stat")
	if err != nil {
		return nil, err
	}
	cur := map[string]int{}
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Split(line, ",")
		if len(f) > 4 && f[0] == backend {
			cur[f[1]], _ = strconv.Atoi(f[4])
		}
	}
	for i := range list {
		list[i].sessionsCurr = cur[list[i].name]
	}
	return list, nil
}

// hapRetries returns the backend's retry and redispatch counters (show stat
// fields wretr and wredis).
func hapRetries(sock, backend string) (retries, redispatches int) {
	stat, err := hapCommand(sock, "show stat")
	if err != nil {
		return -1, -1
	}
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Split(line, ",")
		if len(f) > 16 && f[0] == backend && f[1] == "BACKEND" {
			retries, _ = strconv.Atoi(f[15])
			redispatches, _ = strconv.Atoi(f[16])
		}
	}
	return retries, redispatches
}
