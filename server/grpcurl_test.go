package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/internal/testbed"
)

// grpcurl runs the grpcurl binary (scripts/build-tools.sh builds it from
// the Go module proxy) against addr in plaintext, by reflection (no proto
// files), with stdin as its -d @ input when not empty. It returns stdout,
// stderr and the exit code.
func grpcurl(t *testing.T, bin, addr, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := []string{"-plaintext", "-max-msg-sz", strconv.Itoa(64 << 20)}
	if stdin != "" {
		full = append(full, "-d", "@")
	}
	full = append(full, args...)
	full = append(full[:len(full)-1], addr, full[len(full)-1]) // ADDR before the method or verb
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("grpcurl %v: %v", full, err)
	}
	return out.String(), errb.String(), code
}

// grpcurlJSON runs grpcurl expecting success and decodes its JSON answer.
func grpcurlJSON(t *testing.T, bin, addr, stdin string, v any, args ...string) {
	t.Helper()
	out, errOut, code := grpcurl(t, bin, addr, stdin, args...)
	if code != 0 {
		t.Fatalf("grpcurl %v: exit %d: %s", args, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("grpcurl %v: %v in %q", args, err, out)
	}
}

// TestGrpcurl drives the gRPC front end with grpcurl, a client nobody here
// wrote, knowing the services only by reflection: what it lists, health,
// server and model metadata as over HTTP, an infer whose raw output is
// byte for byte HTTP's binary answer for the same input, and an unknown
// model's NotFound.
func TestGrpcurl(t *testing.T) {
	bin := testbed.GrpcurlBin(t)
	gs := startGRPC(t, tinyConfig(nil))

	out, errOut, code := grpcurl(t, bin, gs.addr, "", "list")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errOut)
	}
	services := strings.Fields(out)
	for _, want := range []string{"inference.GRPCInferenceService", "grpc.health.v1.Health"} {
		if !strings.Contains(" "+strings.Join(services, " ")+" ", " "+want+" ") {
			t.Errorf("list %q lacks %s", services, want)
		}
	}

	var health struct{ Status string }
	grpcurlJSON(t, bin, gs.addr, "", &health, "grpc.health.v1.Health/Check")
	if health.Status != "SERVING" {
		t.Errorf("health %q, want SERVING", health.Status)
	}

	var sm struct {
		Name, Version string
		Extensions    []string
	}
	grpcurlJSON(t, bin, gs.addr, "", &sm, "inference.GRPCInferenceService/ServerMetadata")
	var httpSM struct {
		Name, Version string
		Extensions    []string
	}
	gs.do(t, "GET", "/v2", "", nil).json(t, &httpSM)
	if sm.Name != "inferd" || sm.Name != httpSM.Name || sm.Version != httpSM.Version || !slices.Contains(sm.Extensions, "classification") {
		t.Errorf("ServerMetadata %+v, HTTP /v2 %+v", sm, httpSM)
	}
	for _, ext := range sm.Extensions { // binary_tensor_data is HTTP's alone
		if !slices.Contains(httpSM.Extensions, ext) {
			t.Errorf("ServerMetadata extension %q is not HTTP's %q", ext, httpSM.Extensions)
		}
	}

	// int64 fields come as JSON strings (protobuf's JSON mapping).
	type tensor struct {
		Name, Datatype string
		Shape          []json.Number
	}
	var md struct {
		Name            string
		Platform        string
		Inputs, Outputs []tensor
	}
	grpcurlJSON(t, bin, gs.addr, `{"name": "tiny"}`, &md, "inference.GRPCInferenceService/ModelMetadata")
	var httpMD struct {
		Name            string
		Platform        string
		Inputs, Outputs []struct {
			Name, Datatype string
			Shape          []int64
		}
	}
	gs.do(t, "GET", "/v2/models/tiny", "", nil).json(t, &httpMD)
	if md.Name != "tiny" || md.Platform != httpMD.Platform || len(md.Inputs) != len(httpMD.Inputs) || len(md.Outputs) != len(httpMD.Outputs) {
		t.Fatalf("ModelMetadata %+v, HTTP %+v", md, httpMD)
	}
	for i, in := range md.Inputs {
		h := httpMD.Inputs[i]
		if in.Name != h.Name || in.Datatype != h.Datatype || len(in.Shape) != len(h.Shape) {
			t.Fatalf("input %d: grpcurl %+v, HTTP %+v", i, in, h)
		}
		for j, d := range in.Shape {
			if d.String() != strconv.FormatInt(h.Shape[j], 10) {
				t.Errorf("input %d shape %v, HTTP %v", i, in.Shape, h.Shape)
			}
		}
	}

	// ModelInfer: two rows as raw bytes (base64 in grpcurl's JSON), and the
	// same two rows over HTTP's binary extension.
	const rows = 2
	in := floats(rows*3*224*224, 0.3)
	raw := make([]byte, 0, 4*len(in))
	for _, v := range in {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	req, _ := json.Marshal(map[string]any{
		"model_name":         "tiny",
		"id":                 "grpcurl-1",
		"inputs":             []any{map[string]any{"name": "input", "datatype": "FP32", "shape": []int{rows, 3, 224, 224}}},
		"outputs":            []any{map[string]any{"name": "output"}},
		"raw_input_contents": []string{base64.StdEncoding.EncodeToString(raw)},
	})
	var resp struct {
		ModelName         string
		ID                string
		Outputs           []tensor
		RawOutputContents [][]byte // base64 in JSON
	}
	grpcurlJSON(t, bin, gs.addr, string(req), &resp, "inference.GRPCInferenceService/ModelInfer")
	body, hlen := binaryInfer(rows, in, true)
	want := gs.httpBinaryOutput(t, body, hlen)
	if resp.ModelName != "tiny" || resp.ID != "grpcurl-1" || len(resp.Outputs) != 1 || resp.Outputs[0].Name != "output" ||
		len(resp.Outputs[0].Shape) == 0 || resp.Outputs[0].Shape[0].String() != strconv.Itoa(rows) {
		t.Errorf("ModelInfer answered model %q id %q outputs %+v", resp.ModelName, resp.ID, resp.Outputs)
	}
	if len(resp.RawOutputContents) != 1 || len(want) == 0 || !bytes.Equal(resp.RawOutputContents[0], want) {
		got := 0
		if len(resp.RawOutputContents) > 0 {
			got = len(resp.RawOutputContents[0])
		}
		t.Errorf("raw output (%d contents, first %d bytes) differs from HTTP's binary answer (%d bytes)",
			len(resp.RawOutputContents), got, len(want))
	}

	// An unknown model: grpcurl shows the gRPC code and the server's
	// message, and exits with 64 plus the code (NotFound is 5).
	_, errOut, code = grpcurl(t, bin, gs.addr, `{"name": "resnet9000"}`, "inference.GRPCInferenceService/ModelMetadata")
	if code != 64+5 || !strings.Contains(errOut, "Code: NotFound") || !strings.Contains(errOut, "resnet9000") {
		t.Errorf("unknown model: exit %d, stderr %q; want 69 and Code: NotFound naming the model", code, errOut)
	}
}
