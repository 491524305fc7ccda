// Package inferencepb is the Go code generated from proto/grpc_service.proto
// and proto/model_config.proto: the messages, client and server of the KServe
// v2 / Open Inference Protocol gRPC service (package inference,
// GRPCInferenceService) as Triton publishes it. Do not edit the generated
// files; change the .proto files and run `go generate ./inferencepb`.
package inferencepb

//go:generate go run ../internal/protogen -I ../proto -out . grpc_service.proto model_config.proto
