#!/usr/bin/env bash
# Prepares a GPU visit on this machine (no GPU needed): stages ONNX Runtime
# with its CUDA provider in pieces (.gpu/c1 .. .gpu/c4, by
# ../shared/gpu/stage-ort-cuda.sh) and builds what the visit runs into
# .gpu/bin: inferd, loadtest and the gpu package's test binary. See
# bench/gpu/README.md for the device calls that follow.
#
#   bench/gpu/prepare.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
stage="$root/../shared/gpu/stage-ort-cuda.sh"
if ! ls .gpu/c1/ort.tar.xz.* >/dev/null 2>&1; then
	[ -x "$stage" ] || { echo "prepare: $stage not found (../shared beside the checkout)" >&2; exit 1; }
	"$stage"
fi
rm -rf .gpu/bin
mkdir -p .gpu/bin
# nojpegturbo: the GPU host may lack libturbojpeg.so.0; JPEGs then take the
# pure-Go decoder (slower preprocessing; the infer figures do not care).
flags=(-trimpath -tags nojpegturbo -ldflags='-s -w')
CGO_ENABLED=1 go build "${flags[@]}" -o .gpu/bin/ ./cmd/inferd ./cmd/loadtest
CGO_ENABLED=1 go test -c "${flags[@]}" -o .gpu/bin/gpu.test ./gpu/
# One compressed file: the fourth call carries .gpu/c4 and .gpu/bin, 64 MiB
# at most together.
tar -C .gpu/bin -cf - inferd loadtest gpu.test | xz -6 -T2 >.gpu/bin.tar.xz
rm -f .gpu/bin/inferd .gpu/bin/loadtest .gpu/bin/gpu.test
mv .gpu/bin.tar.xz .gpu/bin/
total=$(du -cb .gpu/c4 .gpu/bin | tail -1 | cut -f1)
ls -la .gpu/c* .gpu/bin
echo "prepare: .gpu/c4 + .gpu/bin = $((total / 1024 / 1024)) MiB (the limit per call is 64)"
[ "$total" -lt $((62 * 1024 * 1024)) ] || { echo "prepare: too large for one call" >&2; exit 1; }
