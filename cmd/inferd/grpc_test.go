package main

import (
	"strings"
	"testing"
)

// -grpc-listen overrides grpc_listen: an address, or "off"; a bad one is
// an error naming the flag and leaves the config's value.
func TestGRPCListenFlag(t *testing.T) {
	for _, tc := range []struct {
		flag, want, err string
	}{
		{"", ":8001", ""},
		{"off", "", ""},
		{"127.0.0.1:0", "127.0.0.1:0", ""},
		{"8001", ":8001", `-grpc-listen "8001": want HOST:PORT`},
	} {
		cfg, err := load("../../configs/inferd.yaml", overrides{grpcListen: tc.flag, device: "cpu"})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("-grpc-listen %q: error %v, want %q", tc.flag, err, tc.err)
			}
		} else if err != nil {
			t.Errorf("-grpc-listen %q: %v", tc.flag, err)
		}
		if cfg.GRPCListen != tc.want {
			t.Errorf("-grpc-listen %q: grpc_listen %q, want %q", tc.flag, cfg.GRPCListen, tc.want)
		}
	}
}
