package inferencepb_test

import (
	"context"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/inferd/inferd/inferencepb"
)

// TestGeneratedMatchesProto compiles proto/ afresh and checks that the
// committed generated code carries the same descriptors: a .proto edited
// without `go generate ./inferencepb` fails here.
func TestGeneratedMatchesProto(t *testing.T) {
	c := protocompile.Compiler{Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{"../proto"}})}
	files, err := c.Compile(context.Background(), "grpc_service.proto", "model_config.proto")
	if err != nil {
		t.Fatal(err)
	}
	for i, gen := range []protoreflect.FileDescriptor{inferencepb.File_grpc_service_proto, inferencepb.File_model_config_proto} {
		want := files[i].(linker.Result).FileDescriptorProto()
		got := protodesc.ToFileDescriptorProto(gen)
		// Source locations (comments) are not compared: only what the wire sees.
		want.SourceCodeInfo, got.SourceCodeInfo = nil, nil
		if !proto.Equal(want, got) {
			t.Errorf("%s: the generated code does not match proto/%s: run go generate ./inferencepb", gen.Path(), gen.Path())
		}
	}
}

// TestServiceName pins what every client dials: the package and service
// names of the published protocol.
func TestServiceName(t *testing.T) {
	if got := inferencepb.GRPCInferenceService_ServiceDesc.ServiceName; got != "inference.GRPCInferenceService" {
		t.Fatalf("service %q, want inference.GRPCInferenceService", got)
	}
	if got := inferencepb.GRPCInferenceService_ModelInfer_FullMethodName; got != "/inference.GRPCInferenceService/ModelInfer" {
		t.Fatalf("method %q", got)
	}
}
