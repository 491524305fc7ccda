// Command baseline is the benchmark's baseline: the shape of the
// two-service Flask design inferd replaces, in Go. A minimal net/http
// server decodes one image per request and runs one inference per request
// on a single ONNX Runtime session (gpu.Open with MaxBatch 1): no batching,
// no queue, requests wait their turn for the session.
//
//	baseline [-listen 127.0.0.1:8001] [-arch resnet50] [-name resnet50]
//
// It answers the paths the load tester uses: GET /v2/models/NAME (KServe v2
// metadata), POST /v2/models/NAME/classify (an image body, top 5) and
// POST /recognize (multipart field "image", top 3).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"

	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/model"
	"github.com/inferd/inferd/preprocess"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8001", "listen address")
	arch := flag.String("arch", model.ArchResNet50, "generated model: resnet50 or tiny")
	name := flag.String("name", "", "model name in URLs (default: -arch)")
	flag.Parse()
	if *name == "" {
		*name = *arch
	}
	path, err := model.Ensure(model.DefaultCacheDir(), model.Spec{Arch: *arch})
	if err != nil {
		return err
	}
	sess, err := gpu.Open(path, gpu.Options{Library: os.Getenv("INFERD_ORT_LIB"), Device: "cpu", MaxBatch: 1, Instances: 1})
	if err != nil {
		return err
	}
	defer sess.Close()
	pre, err := preprocess.New(preprocess.Config{})
	if err != nil {
		return err
	}
	s := &service{name: *name, sess: sess, pre: pre}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/models/"+*name, s.metadata)
	mux.HandleFunc("POST /v2/models/"+*name+"/classify", func(w http.ResponseWriter, r *http.Request) {
		img, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.answer(w, img, 5)
	})
	mux.HandleFunc("POST /recognize", func(w http.ResponseWriter, r *http.Request) {
		f, _, err := r.FormFile("image")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer f.Close()
		img, err := io.ReadAll(f)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.answer(w, img, 3)
	})
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"live":true}`) })
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Printf("baseline: serving %s (%s) on %s, one image per inference", *name, path, ln.Addr())
	return http.Serve(ln, mux)
}

type service struct {
	name string
	sess *gpu.Model
	pre  *preprocess.Preprocessor
}

type prediction struct {
	Index       int     `json:"index"`
	Probability float32 `json:"probability"`
}

func (s *service) metadata(w http.ResponseWriter, r *http.Request) {
	type tensor struct {
		Name     string  `json:"name"`
		Datatype string  `json:"datatype"`
		Shape    []int64 `json:"shape"`
	}
	md := struct {
		Name    string   `json:"name"`
		Inputs  []tensor `json:"inputs"`
		Outputs []tensor `json:"outputs"`
	}{Name: s.name}
	for _, t := range s.sess.Inputs() {
		md.Inputs = append(md.Inputs, tensor{t.Name, t.Datatype, append([]int64{-1}, t.RowShape()...)})
	}
	for _, t := range s.sess.Outputs() {
		md.Outputs = append(md.Outputs, tensor{t.Name, t.Datatype, append([]int64{-1}, t.RowShape()...)})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(md)
}

// answer preprocesses img into the session's input, runs it alone and
// writes the top k.
func (s *service) answer(w http.ResponseWriter, img []byte, k int) {
	preds, err := s.classify(img, k)
	if err != nil {
		code := http.StatusInternalServerError
		var pe *httperr.Error
		if errors.As(err, &pe) {
			code = pe.StatusCode()
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"model": s.name, "predictions": preds})
}

func (s *service) classify(img []byte, k int) ([]prediction, error) {
	row := make([]byte, s.pre.RowBytes())
	if err := s.pre.Process(img, row); err != nil {
		return nil, err
	}
	l, err := s.sess.Acquire(1)
	if err != nil {
		return nil, err
	}
	defer l.Release()
	copy(l.Input(0), row)
	if err := l.Run(); err != nil {
		return nil, err
	}
	out := l.Output(0)
	probs := make([]float32, len(out)/4)
	for i := range probs {
		probs[i] = math.Float32frombits(uint32(out[4*i]) | uint32(out[4*i+1])<<8 | uint32(out[4*i+2])<<16 | uint32(out[4*i+3])<<24)
	}
	return topK(probs, k), nil
}

// topK returns the k largest probabilities, largest first.
func topK(p []float32, k int) []prediction {
	var top []prediction
	for i, v := range p {
		if len(top) < k || v > top[len(top)-1].Probability {
			j := len(top)
			if j < k {
				top = append(top, prediction{})
			} else {
				j--
			}
			for ; j > 0 && top[j-1].Probability < v; j-- {
				top[j] = top[j-1]
			}
			top[j] = prediction{i, v}
		}
	}
	return top
}
