//go:build tools

// Package tools pins grpcurl (github.com/fullstorydev/grpcurl, MIT), the
// gRPC command-line client that scripts/build-tools.sh builds for the gRPC
// tests: a real client nobody here wrote, driving the server by reflection.
package tools

import _ "github.com/fullstorydev/grpcurl/cmd/grpcurl"
