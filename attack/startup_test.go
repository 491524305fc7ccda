package attack

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"testing"
	"time"
)

// resnet50 is the models list of the startup and overload tests: the
// generated ResNet50, which takes seconds to load and about 40 ms an image
// on one CPU thread. extra is appended inside its braces.
func resnet50(extra string) string {
	return fmt.Sprintf(`  - {name: resnet50, path: "builtin:resnet50", device: cpu, max_batch: 4, instances: 1, intra_op_threads: 1%s}`, extra)
}

// While the model loads, its classify and ready routes answer 503 with
// Retry-After, as /v2/health/ready does; never 404 (issue 9 item 8). The
// server listens first and loads after, so there is a window to poll.
func TestStartupAnswers503(t *testing.T) {
	s := launch(t, serverConfig{models: resnet50("")})
	v := &verdict{t: t}
	var img bytes.Buffer
	png.Encode(&img, image.NewGray(image.Rect(0, 0, 32, 32)))
	c := client("127.0.0.1", 5*time.Second)
	ctx := context.Background()
	codes := &tally{}
	begin := time.Now()
	loading := 0
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) && s.Running() {
		ready := get(c, s.base+"/v2/models/resnet50/ready")
		classify := post(ctx, c, s.base+"/v2/models/resnet50/classify", img.Bytes(), "Content-Type", "image/png")
		// Counted only when the server still says it is loading after
		// both answers: they were given while it loaded.
		health := get(c, s.base+"/v2/health/ready")
		if health == "200" {
			break
		}
		if health != "closed" && ready != "closed" && classify != "closed" { // listening
			loading++
			codes.add("ready " + ready)
			codes.add("classify " + classify)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(begin)
	t.Logf("while loading (%d polls in %s): %s", loading, took.Round(time.Millisecond), codes)
	if !s.Running() || took > 120*time.Second {
		t.Fatalf("resnet50 not ready in 120s:\n%s", s.Tail(20))
	}
	if loading == 0 {
		t.Fatalf("the server was never seen loading (ready at the first poll): no window to test")
	}
	bad := codes.outside(oneOf("ready 503", "classify 503"))
	v.check(bad == "", "503 with Retry-After while loading", "8", "want ready 503 and classify 503, both with Retry-After; got %s", bad)
	o := post(ctx, c, s.base+"/v2/models/resnet50/classify", img.Bytes(), "Content-Type", "image/png")
	v.check(o == "200", "classify once ready", "8", "got %s", o)
	v.row("startup: classify and ready while resnet50 loads", codes.String(), "-", took)
}
