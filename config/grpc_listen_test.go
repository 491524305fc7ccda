package config

import (
	"strings"
	"testing"
)

// grpc_listen: absent is Triton's :8001 (and said to be the default), ""
// and "off" turn gRPC off, an address is taken as listen takes one.
func TestGRPCListen(t *testing.T) {
	for _, tc := range []struct {
		yaml      string
		want      string
		defaulted bool
		err       string
	}{
		{yaml: "", want: ":8001", defaulted: true},
		{yaml: "grpc_listen: \"\"", want: ""},
		{yaml: "grpc_listen: off", want: ""},
		{yaml: "grpc_listen: 127.0.0.1:9001", want: "127.0.0.1:9001"},
		{yaml: "grpc_listen: \":8001\"", want: ":8001"}, // set, so it must bind
		{yaml: "grpc_listen: \"8001\"", err: `config: grpc_listen "8001": want HOST:PORT, e.g. :8000 (or off)`},
	} {
		c, err := Parse([]byte(tc.yaml))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if c.GRPCListen != tc.want || c.GRPCListenDefaulted() != tc.defaulted {
			t.Errorf("%q: grpc_listen %q (defaulted %v), want %q (%v)", tc.yaml, c.GRPCListen, c.GRPCListenDefaulted(), tc.want, tc.defaulted)
		}
	}
	if d := Default(); d.GRPCListen != DefaultGRPCListen || !d.GRPCListenDefaulted() {
		t.Errorf("Default(): grpc_listen %q", d.GRPCListen)
	}
}
