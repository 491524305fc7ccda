// Command httpceiling is the benchmark's HTTP ceiling: a bare fasthttp
// handler that takes the same KServe v2 binary requests inferd does and
// answers each with a canned response of the same size as the tiny
// model's, computing nothing. Whatever rate it reaches on a machine is the
// most any HTTP inference server can reach there with that payload.
//
//	httpceiling [-listen 127.0.0.1:8002] [-name tiny]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8002", "listen address")
	name := flag.String("name", "tiny", "model name in URLs")
	flag.Parse()
	if err := serve(*listen, *name); err != nil {
		fmt.Fprintln(os.Stderr, "httpceiling:", err)
		os.Exit(1)
	}
}

// Shapes of the tiny model: float32 [N,3,224,224] in, [N,1000] out.
const (
	outputElems = 1000
	metadata    = `{"name":"%s","versions":["1"],"platform":"onnxruntime_onnx",` +
		`"inputs":[{"name":"input","datatype":"FP32","shape":[-1,3,224,224]}],` +
		`"outputs":[{"name":"output","datatype":"FP32","shape":[-1,1000]}]}`
)

func serve(listen, name string) error {
	meta := fmt.Appendf(nil, metadata, name)
	header := fmt.Appendf(nil, `{"model_name":%q,"model_version":"1","outputs":[{"name":"output","datatype":"FP32","shape":[1,%d],"parameters":{"binary_data_size":%d}}]}`,
		name, outputElems, 4*outputElems)
	body := append(bytes.Clone(header), make([]byte, 4*outputElems)...)
	hlen := strconv.Itoa(len(header))
	metaPath, inferPath := "/v2/models/"+name, "/v2/models/"+name+"/infer"
	handler := func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case metaPath:
			ctx.SetContentType("application/json")
			ctx.SetBody(meta)
		case inferPath:
			if !ctx.IsPost() || len(ctx.Request.Header.Peek("Inference-Header-Content-Length")) == 0 {
				ctx.Error(`{"error":"want a POST with the binary tensor extension"}`, fasthttp.StatusBadRequest)
				return
			}
			ctx.Response.Header.Set("Inference-Header-Content-Length", hlen)
			ctx.SetContentType("application/octet-stream")
			ctx.SetBody(body)
		default:
			ctx.Error(`{"error":"not found"}`, fasthttp.StatusNotFound)
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	log.Printf("httpceiling: serving %s on %s", name, ln.Addr())
	return (&fasthttp.Server{Handler: handler, Name: "httpceiling", MaxRequestBodySize: 64 << 20}).Serve(ln)
}
