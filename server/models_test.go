package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
)

// Two models side by side, one taking float32 NCHW rows and one uint8 NHWC
// pixels: each is served with its own datatype, and an image classifies on
// both (the uint8 model gets raw pixels, normalised inside its graph).
func TestTwoModelsAndUint8Input(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Models = append(c.Models, config.Model{Name: "tiny-u8", Options: gpu.Options{Device: "cpu"}, Path: "builtin:tiny-uint8", Softmax: "auto"})
	}))
	pixels := make([]int, 2*224*224*3)
	for i := range pixels {
		pixels[i] = i % 251
	}
	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "input", "datatype": "UINT8", "shape": []int{2, 224, 224, 3}, "data": pixels,
	}}})
	var r inferResponse
	resp := ts.do(t, "POST", "/v2/models/tiny-u8/infer", "", body)
	if resp.code != 200 {
		t.Fatalf("uint8 infer: %d %s", resp.code, resp.body)
	}
	resp.json(t, &r)
	if len(r.Outputs) != 1 || len(r.Outputs[0].Data) != 2000 {
		t.Fatalf("uint8 infer response: %s", resp.body[:min(200, len(resp.body))])
	}
	// FP32 data sent to the uint8 model is refused with the datatype it takes.
	ts.do(t, "POST", "/v2/models/tiny-u8/infer", "", jsonInfer(1, floats(3*224*224, 0))).wantError(t, 400, "takes UINT8")

	img := pngImage(t, 256, 256, 3)
	var a, b struct{ Predictions []struct{ Index int } }
	ts.do(t, "POST", "/v2/models/tiny/classify", "image/png", img).json(t, &a)
	ts.do(t, "POST", "/v2/models/tiny-u8/classify", "image/png", img).json(t, &b)
	// Same seed, same weights: the in-graph normalisation must agree with
	// the server's float32 preprocessing.
	if len(a.Predictions) != 5 || len(b.Predictions) != 5 || a.Predictions[0] != b.Predictions[0] {
		t.Errorf("float32 and uint8 models disagree on one image: %v vs %v", a.Predictions, b.Predictions)
	}
}

// A client that sends its headers and then stalls never reaches the
// batcher: the read timeout closes its connection while other clients are
// served.
func TestSlowClientTimesOut(t *testing.T) {
	s, addr := startTCP(t, tinyConfig(func(c *config.Config) { c.Server.ReadTimeout = 300 * time.Millisecond }))
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\"")
	start := time.Now()
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = bufio.NewReader(slow).ReadString('\n')
	took := time.Since(start)
	if took > 3*time.Second {
		t.Errorf("slow connection held for %v (read_timeout 300ms)", took)
	}
	t.Logf("slow client cut off after %v (%v)", took.Round(time.Millisecond), err)
	if d := s.model("tiny").QueueDepth(); d != 0 {
		t.Errorf("queue depth %d: the slow request reached the batcher", d)
	}
}
