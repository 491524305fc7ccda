#!/usr/bin/env bash
# Packs a GPU visit into ONE transfer (bench/gpu/README.md), on this
# machine, no GPU needed: .gpu/pack, under 60 MiB, with
#   ort.tar.xz   ONNX Runtime 1.29.0: the core, providers_shared, and the
#                CUDA provider reduced to the sm_90 code an H100/H200 runs
#                (bench/gpu/fatbin; proved by bench/gpu/check-provider.py)
#   bin.tar.xz   inferd, loadtest and gpu.test (go test -c ./gpu/)
#   scripts/     visit.sh, visit.py, README.md
#   MANIFEST     what was built from what, the proof, sha256 sums
# xz, because it is what brings the pack under the limit (52 MiB; gzip -9
# of the same: 68 MiB); the host reads it with python3's lzma, no xz needed.
#
#   bench/gpu/prepare.sh              about 4 minutes the first time, then
#                                     under 1 (the reduced runtime is cached)
#   ARCH=80 bench/gpu/prepare.sh      another GPU's code (80: A100)
#   RELAY=1 bench/gpu/prepare.sh      the fallback: the whole provider in
#                                     pieces (.gpu/c1..c4), the pack without it
#   PACK=DIR                          where the pack goes (default .gpu/pack)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
PACK=${PACK:-$root/.gpu/pack}
ARCH=${ARCH:-90}
cache=${INFERD_CACHE:-$HOME/.cache/inferd}
limit_mib=60
log() { printf 'prepare: %s\n' "$*" >&2; }
t0=$SECONDS

# .gpu/ holds what is built for a visit; git never sees it.
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"

# The same tarballs and sums as scripts/setup.sh and
# ../shared/gpu/stage-ort-cuda.sh, from the same cache.
core_pkg=onnxruntime-node@1.29.0
core_tgz=onnxruntime-node-1.29.0.tgz
core_sum=cfdfb45ec4044b1fdca43e5d2e180fb6817e649ff8ad1e0dfc90e18e51b67037
cuda_pkg=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
cuda_tgz=com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz
cuda_sum=2b459e0c17f340c92970c10ed86de4f37a3009f93c14053e6ad4334cbb6be412

fetch() { # fetch PKG TGZ SUM: the verified tarball in the cache
	local pkg=$1 tgz=$2 sum=$3
	mkdir -p "$cache"
	if [ -f "$cache/$tgz" ] && echo "$sum  $cache/$tgz" | sha256sum -c --status; then
		return
	fi
	command -v npm >/dev/null || { log "npm not found: apt-get install npm, or put $tgz in $cache"; exit 1; }
	log "npm pack $pkg (once; cached in $cache)"
	(cd "$cache" && npm pack --silent "$pkg" >/dev/null)
	echo "$sum  $cache/$tgz" | sha256sum -c --status || {
		log "sha256 of $cache/$tgz is not the pinned $sum; refusing it"
		rm -f "$cache/$tgz"
		exit 1
	}
}

xzc() { # xz -9 (a 64 MiB dictionary: the three Go binaries share much)
	if command -v xz >/dev/null; then
		xz -9 -T2 -c
	else
		python3 -c 'import lzma, shutil, sys; w = lzma.LZMAFile(sys.stdout.buffer, "w", preset=9); shutil.copyfileobj(sys.stdin.buffer, w, 1 << 20); w.close()'
	fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$PACK"
mkdir -p "$PACK/scripts"

if [ -n "${RELAY:-}" ]; then
	# The fallback: stage-ort-cuda.sh's pieces carry the whole provider,
	# one call each; the pack then carries only the binaries and scripts.
	stage=$root/../shared/gpu/stage-ort-cuda.sh
	[ -x "$stage" ] || { log "$stage not found (../shared beside the checkout)"; exit 1; }
	ls .gpu/c1/ort.tar.xz.* >/dev/null 2>&1 || { "$stage" && mkdir -p "$PACK/scripts"; }
else
	# The runtime, reduced, is cached by everything that goes into it.
	key=$(cat bench/gpu/fatbin/fatbin.go bench/gpu/fatbin/main.go bench/gpu/check-provider.py | sha256sum | cut -c1-12)-${core_sum:0:8}-${cuda_sum:0:8}-sm$ARCH
	ortxz=$cache/visit/ort-$key.tar.xz
	if [ ! -f "$ortxz" ] || [ ! -f "$ortxz.check" ]; then
		fetch "$core_pkg" "$core_tgz" "$core_sum"
		fetch "$cuda_pkg" "$cuda_tgz" "$cuda_sum"
		mkdir -p "$work/ort" "$work/full" "$cache/visit"
		tar xzf "$cache/$core_tgz" -O package/bin/napi-v6/linux/x64/libonnxruntime.so.1 >"$work/ort/libonnxruntime.so.1"
		ln -s libonnxruntime.so.1 "$work/ort/libonnxruntime.so"
		tar xzf "$cache/$cuda_tgz" -O package/Plugins/Linux/x64/libonnxruntime_providers_shared.so >"$work/ort/libonnxruntime_providers_shared.so"
		tar xzf "$cache/$cuda_tgz" -O package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so >"$work/full/libonnxruntime_providers_cuda.so"
		log "reducing the CUDA provider to sm_$ARCH"
		go run ./bench/gpu/fatbin keep -arch "$ARCH" -o "$work/ort/libonnxruntime_providers_cuda.so" "$work/full/libonnxruntime_providers_cuda.so" >&2
		{
			echo "the reduced provider against the original (bench/gpu/check-provider.py):"
			echo "original: $(sha256sum <"$work/full/libonnxruntime_providers_cuda.so" | cut -d' ' -f1)  libonnxruntime_providers_cuda.so ($cuda_tgz)"
			python3 bench/gpu/check-provider.py -arch "$ARCH" "$work/full/libonnxruntime_providers_cuda.so" "$work/ort/libonnxruntime_providers_cuda.so"
		} >"$work/check.txt" || { cat "$work/check.txt" >&2; log "the reduced provider failed its check"; exit 1; }
		(cd "$work/ort" && sha256sum libonnxruntime.so.1 libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so >SHA256SUMS)
		rm -rf "$work/full"
		log "compressing ONNX Runtime (xz -9, about a minute)"
		tar -C "$work" -cf - ort | xzc >"$ortxz.tmp"
		mv "$work/check.txt" "$ortxz.check"
		mv "$ortxz.tmp" "$ortxz"
		rm -rf "$work/ort"
		# Earlier builds for this architecture are stale now.
		find "$cache/visit" -name "ort-*-sm$ARCH.tar.xz*" ! -name "ort-$key.tar.xz*" -delete
	fi
	cp "$ortxz" "$PACK/ort.tar.xz"
	cat "$ortxz.check" >&2
fi

# nojpegturbo: the GPU host may lack libturbojpeg.so.0; JPEGs then take the
# pure-Go decoder (slower preprocessing; the infer figures do not care).
log "building inferd, loadtest and gpu.test"
mkdir -p "$work/bin"
flags=(-trimpath -tags nojpegturbo -ldflags='-s -w')
CGO_ENABLED=1 go build "${flags[@]}" -o "$work/bin/" ./cmd/inferd ./cmd/loadtest
CGO_ENABLED=1 go test -c "${flags[@]}" -o "$work/bin/gpu.test" ./gpu/
tar -C "$work" -cf - bin | xzc >"$PACK/bin.tar.xz"
cp bench/gpu/visit.sh bench/gpu/visit.py bench/gpu/README.md "$PACK/scripts/"

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . 2>/dev/null || commit="$commit+changes"
{
	echo "inferd GPU visit pack"
	echo "built: $(date -u '+%Y-%m-%d %H:%M UTC') from $commit, $(go env GOVERSION)"
	if [ -n "${RELAY:-}" ]; then
		echo "arch: relay (the whole provider arrives in .gpu/c1..c4)"
	else
		echo "arch: sm_$ARCH"
		echo "onnxruntime: 1.29.0 core from $core_tgz, CUDA 13 provider from $cuda_tgz"
	fi
	echo
	(cd "$PACK" && find . -type f ! -name MANIFEST | sort | sed 's|^\./||' | xargs sha256sum)
	echo
	for f in "$PACK"/*.tar.xz; do
		echo "$(basename "$f"): $(stat -c %s "$f") bytes"
		python3 -c 'import sys, tarfile; [print("  %10d  %s" % (m.size, m.name)) for m in tarfile.open(sys.argv[1], "r:xz") if m.isfile()]' "$f"
	done
	[ -n "${RELAY:-}" ] || { echo; cat "$ortxz.check"; }
} >"$PACK/MANIFEST"

total=$(du -cb "$PACK" | tail -1 | cut -f1)
tree=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
ls -l "$PACK" >&2
log "$PACK: $((total / 1024)) KiB; with the checkout's tracked files ($((tree / 1024)) KiB) $(((total + tree) / 1024 / 1024)) MiB of the 64 MiB a call carries (in $((SECONDS - t0)) s)"
[ "$total" -le $((limit_mib * 1024 * 1024)) ] || { log "the pack is over $limit_mib MiB"; exit 1; }
if [ -n "${RELAY:-}" ]; then
	log "relay: calls 1-3 carry .gpu/c1, .gpu/c2, .gpu/c3; call 4 carries .gpu/c4 and .gpu/pack: see bench/gpu/README.md"
fi
log "dry run here first: DEVICE=cpu OUT=/tmp/visit bash bench/gpu/visit.sh"
