#!/usr/bin/env bash
# Installs what inferd needs into .deps/ of the checkout. Idempotent; Debian 12.
#
#   scripts/setup.sh          ONNX Runtime 1.29.0 core (CPU; the CUDA-capable core)
#   GPU=1 scripts/setup.sh    also its CUDA 13 execution provider, beside the core
#   TOOLS=0 scripts/setup.sh  without the test and cluster tools (promtool,
#                             HAProxy, and Consul and Prometheus built from
#                             the Go module proxy by scripts/build-tools.sh)
#   JPEG=0 scripts/setup.sh   without libjpeg-turbo's headers and gcc (a
#                             place that only fetches ONNX Runtime, such as
#                             Dockerfile.cuda's ort stage)
#
# Tarballs come from the npm registry with `npm pack` (no install scripts run),
# are checked against pinned sha256 sums and cached in $INFERD_CACHE
# (default ~/.cache/inferd) so that a fresh clone sets up without downloading.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
cache="${INFERD_CACHE:-$HOME/.cache/inferd}"
gpu="${GPU:-0}"

core_pkg=onnxruntime-node@1.29.0
core_tgz=onnxruntime-node-1.29.0.tgz
core_sum=cfdfb45ec4044b1fdca43e5d2e180fb6817e649ff8ad1e0dfc90e18e51b67037
cuda_pkg=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
cuda_tgz=com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz
cuda_sum=2b459e0c17f340c92970c10ed86de4f37a3009f93c14053e6ad4334cbb6be412

log() { printf 'setup: %s\n' "$*" >&2; }

need() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
	if [ "$(id -u)" != 0 ]; then
		log "missing $*: run as root or install them with apt-get"
		exit 1
	fi
	log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# fetch NAME TGZ SUM: puts the verified tarball in the cache.
fetch() {
	local pkg=$1 tgz=$2 sum=$3
	mkdir -p "$cache"
	if [ -f "$cache/$tgz" ] && echo "$sum  $cache/$tgz" | sha256sum -c --status; then
		return
	fi
	need npm || apt_install npm
	log "npm pack $pkg"
	(cd "$cache" && npm pack --silent "$pkg" >/dev/null)
	if ! echo "$sum  $cache/$tgz" | sha256sum -c --status; then
		log "sha256 of $cache/$tgz does not match the pinned $sum; refusing to use it"
		rm -f "$cache/$tgz"
		exit 1
	fi
}

# extract TGZ MEMBER DEST: copies one file out of a cached tarball.
extract() {
	local tgz=$1 member=$2 dest=$3
	tar xzf "$cache/$tgz" -O "$member" >"$dest.tmp"
	mv "$dest.tmp" "$dest"
}

mkdir -p "$deps/ort"
stamp="$deps/ort/.core-$core_sum"
if [ ! -f "$stamp" ]; then
	fetch "$core_pkg" "$core_tgz" "$core_sum"
	extract "$core_tgz" package/bin/napi-v6/linux/x64/libonnxruntime.so.1 "$deps/ort/libonnxruntime.so.1"
	ln -sf libonnxruntime.so.1 "$deps/ort/libonnxruntime.so"
	touch "$stamp"
	log "ONNX Runtime 1.29.0 core in $deps/ort"
fi

if [ "$gpu" = 1 ]; then
	stamp="$deps/ort/.cuda-$cuda_sum"
	if [ ! -f "$stamp" ]; then
		fetch "$cuda_pkg" "$cuda_tgz" "$cuda_sum"
		for lib in libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so; do
			extract "$cuda_tgz" "package/Plugins/Linux/x64/$lib" "$deps/ort/$lib"
		done
		touch "$stamp"
		log "ONNX Runtime CUDA 13 provider in $deps/ort (needs CUDA 13 and cuDNN 9 on LD_LIBRARY_PATH)"
	fi
fi

# libjpeg-turbo's TurboJPEG API: preprocess decodes JPEGs with it through
# cgo (go build -tags nojpegturbo, or CGO_ENABLED=0, does without: slower).
jpeg_pkgs=()
if [ "${JPEG:-1}" = 1 ]; then
	[ -f /usr/include/turbojpeg.h ] || jpeg_pkgs+=(libturbojpeg0-dev)
	need gcc || jpeg_pkgs+=(gcc libc6-dev)
fi
if [ ${#jpeg_pkgs[@]} -gt 0 ]; then
	apt_install "${jpeg_pkgs[@]}"
fi

# Tools the tests run for real: promtool (Prometheus's linter) checks the
# /metrics output; the cluster tests and `make cluster` run HAProxy, and a
# Consul agent and a Prometheus with consul_sd_configs that
# scripts/build-tools.sh builds once into $INFERD_CACHE/bin. TOOLS=0 skips
# them (a user who only runs the server).
if [ "${TOOLS:-1}" = 1 ]; then
	missing=()
	need promtool || missing+=(prometheus)
	need haproxy || missing+=(haproxy)
	need curl || missing+=(curl)
	need ss || missing+=(iproute2)
	# The web page's tests drive Debian's chromium headless (web/webtest).
	need chromium || missing+=(chromium)
	if [ ${#missing[@]} -gt 0 ]; then
		apt_install "${missing[@]}"
	fi
	"$root/scripts/build-tools.sh"
fi

log "ready: INFERD_ORT_LIB=$deps/ort/libonnxruntime.so.1"
