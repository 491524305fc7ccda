//go:build tools

// Package tools pins the Prometheus server and promtool that
// scripts/build-tools.sh builds for the cluster scripts and tests
// (Apache-2.0): Debian's prometheus package is built without
// consul_sd_configs.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
