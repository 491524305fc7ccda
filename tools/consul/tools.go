//go:build tools

// Package tools pins the Consul agent (github.com/hashicorp/consul,
// MPL-2.0) that scripts/build-tools.sh builds for the cluster scripts and
// tests.
package tools

import _ "github.com/hashicorp/consul"
