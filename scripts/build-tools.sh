#!/usr/bin/env bash
# Builds the cluster's Go programs from the Go module proxy into
# $INFERD_CACHE/bin (default ~/.cache/inferd/bin), once; later runs reuse them.
#
#   consul-1.14.11       Consul agent (MPL-2.0), pinned in tools/consul/go.mod
#   prometheus-2.55.1    Prometheus and promtool (Apache-2.0), pinned in
#   promtool-2.55.1      tools/prometheus/go.mod: Debian's are built without
#                        consul_sd_configs
#   grpcurl-1.9.4        grpcurl (MIT), pinned in tools/grpcurl/go.mod: the
#                        gRPC client the gRPC tests drive inferd with
#
# The first build takes minutes on 2 cores (Consul about 8, Prometheus about
# 5, grpcurl about 2); prints the paths when done. Set FORCE=1 to rebuild.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="${INFERD_CACHE:-$HOME/.cache/inferd}"
bin="$cache/bin"
mkdir -p "$bin"

log() { printf 'build-tools: %s\n' "$*" >&2; }

# build NAME MODULE_DIR PACKAGE [LDFLAGS]
build() {
	local name=$1 dir=$2 pkg=$3 ldflags=${4:-} start
	if [ -x "$bin/$name" ] && [ "${FORCE:-0}" != 1 ]; then
		return
	fi
	start=$(date +%s)
	log "go build $pkg -> $bin/$name (first time: minutes)"
	(cd "$root/tools/$dir" && GOWORK=off GOFLAGS=-mod=readonly go build -trimpath -ldflags="$ldflags" -o "$bin/$name.tmp" "$pkg")
	mv "$bin/$name.tmp" "$bin/$name"
	log "$name built in $(($(date +%s) - start))s"
}

build consul-1.14.11 consul github.com/hashicorp/consul
build prometheus-2.55.1 prometheus github.com/prometheus/prometheus/cmd/prometheus
build promtool-2.55.1 prometheus github.com/prometheus/prometheus/cmd/promtool
build grpcurl-1.9.4 grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl -X=main.version=v1.9.4
