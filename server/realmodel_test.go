package server

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
)

// The real pretrained classifier answers the photos with the classes and
// probabilities its README gives: proof that decoding, resizing, cropping,
// normalisation, layout, softmax and labels are all right end to end.
//
// The README's probabilities come out of a resize computed in float
// (preprocess.resample: float): all three within the 3 points.
// The default, PIL's 8-bit resize, gives rows byte-identical to PIL's
// (preprocess's TestRealImages) and the same top-1 labels, but the int8
// model turns that under-one-level difference into 0.622 for the cat
// rather than 0.684, so the default is held to 7 points for it.
func TestRealModelClassifiesPhotos(t *testing.T) {
	dir := os.Getenv("INFERD_REALMODEL_DIR")
	if dir == "" {
		t.Skip("INFERD_REALMODEL_DIR is not set: the real pretrained model lives in ../shared/realmodel (.ci/run sets it)")
	}
	photos := []struct {
		file  string
		index int
		label string
		prob  float64 // about, from the model's README
	}{
		{"glow_dog_207.png", 207, "golden retriever", 0.98},
		{"glow_zebra_340.png", 340, "zebra", 0.997},
		{"glow_cat_285.png", 281, "tabby, tabby cat", 0.68},
	}
	for _, mode := range []struct {
		resample string
		tol      func(file string) float64
	}{
		{"float", func(string) float64 { return 0.03 }},
		{"", func(f string) float64 { // the default, pil
			if f == "glow_cat_285.png" {
				return 0.07
			}
			return 0.03
		}},
	} {
		name := "resample=" + mode.resample
		if mode.resample == "" {
			name = "resample=default(pil)"
		}
		t.Run(name, func(t *testing.T) {
			ts := start(t, tinyConfig(func(c *config.Config) {
				m := config.Model{Name: "mobilenet", Options: gpu.Options{Device: "cpu"}, Path: filepath.Join(dir, "mobilenetv2-12-int8.onnx"), Labels: filepath.Join(dir, "synset.txt"), Softmax: "auto"}
				m.Preprocess.Resample = mode.resample
				c.Models = []config.Model{m}
			}))
			for _, c := range photos {
				img, err := os.ReadFile(filepath.Join(dir, "images", c.file))
				if err != nil {
					t.Fatal(err)
				}
				var cr classifyResponse
				r := ts.do(t, "POST", "/v2/models/mobilenet/classify?top_k=2", "image/png", img)
				if r.code != 200 {
					t.Fatalf("%s: %d %s", c.file, r.code, r.body)
				}
				r.json(t, &cr)
				top := cr.Predictions[0]
				tol := mode.tol(c.file)
				if top.Index != c.index || top.Label != c.label || math.Abs(top.Probability-c.prob) > tol {
					t.Errorf("%s: top-1 %+v, want %d %q with probability %.3f±%.2f", c.file, top, c.index, c.label, c.prob, tol)
				}
				t.Logf("%s: %+v", c.file, cr.Predictions)
			}
		})
	}
}
