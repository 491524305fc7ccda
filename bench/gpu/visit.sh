#!/usr/bin/env bash
# The measurements of a GPU visit, in one run on the GPU host (the device
# tool's fourth call, from the repository root, with .gpu/c4 and .gpu/bin
# carried; .gpu/c1..c3 were copied to /opt/ortx by the first three calls).
# Everything it prints and measures lands in $OUT. See bench/gpu/README.md.
#
#   bash bench/gpu/visit.sh            # about 6 minutes on an H100
#   QUICK=1 bash bench/gpu/visit.sh    # fp32 only, no classify sweep
#
# DEVICE=cpu SKIP_UNPACK=1 ORT_DIR=.deps/ort bash bench/gpu/visit.sh is the
# dry run on a machine without a GPU.
set -uo pipefail
root=$(pwd)
OUT=${OUT:-$root/.gpu/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/visit.log") 2>&1
DEVICE=${DEVICE:-cuda:0}
ORTX=${ORTX:-/opt/ortx}
work=$(mktemp -d)
step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "binaries"
tar -C "$work" -xJf .gpu/bin/bin.tar.xz || { echo "visit: no .gpu/bin/bin.tar.xz: run bench/gpu/prepare.sh"; exit 1; }
ls -la "$work"

if [ -z "${SKIP_UNPACK:-}" ]; then
	step "ONNX Runtime pieces"
	mkdir -p "$ORTX"
	cp .gpu/c4/ort.tar.xz.* "$ORTX/" 2>/dev/null
	ls -la "$ORTX"
	if command -v xz >/dev/null; then
		(cd "$ORTX" && cat ort.tar.xz.* | xz -d | tar x)
	else
		(cd "$ORTX" && cat ort.tar.xz.* | python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.decompress(sys.stdin.buffer.read()))" | tar x)
	fi
	(cd "$ORTX/ort" && sha256sum -c SHA256SUMS) || { echo "visit: ONNX Runtime pieces incomplete"; exit 1; }
fi
ORT_DIR=${ORT_DIR:-$ORTX/ort}
ORT_DIR=$(cd "$ORT_DIR" && pwd)
export INFERD_ORT_LIB=$ORT_DIR/libonnxruntime.so.1

step "GPU and CUDA libraries"
if [ "$DEVICE" != cpu ]; then
	nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.csv"
	nvidia-smi | head -15
	libdirs=$(find / \( -name 'libcublasLt.so.13*' -o -name 'libcublas.so.13*' -o -name 'libcudart.so.13*' \
		-o -name 'libcurand.so.10*' -o -name 'libcudnn.so.9*' \) -not -path '/proc/*' 2>/dev/null |
		xargs -r -n1 dirname | sort -u | paste -sd:)
	echo "CUDA library folders: $libdirs"
	export LD_LIBRARY_PATH=${libdirs}:$ORT_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
nproc; grep -m1 'model name' /proc/cpuinfo
export INFERD_MODEL_DIR=$work/models

models=(resnet50 resnet50-fp16)
[ -n "${QUICK:-}" ] && models=(resnet50)
for m in "${models[@]}"; do
	step "raw ONNX Runtime $m on $DEVICE: which provider ran each node (one profiled pass)"
	(cd "$work" && INFERD_BENCH_DEVICE=$DEVICE INFERD_BENCH_MODEL=$m INFERD_BENCH_PROFILE=$OUT/profile-$m \
		timeout 240 ./gpu.test -test.run '^$' -test.bench BenchmarkRun -test.benchtime 1x >/dev/null)
	for f in "$OUT"/profile-"$m"*.json; do
		[ -f "$f" ] || continue
		echo "$f:"
		grep -oE '"provider" *: *"[A-Za-z]+"' "$f" | sort | uniq -c | tee "$OUT/providers-$m.txt"
		xz -T2 "$f"
	done
	step "raw ONNX Runtime $m on $DEVICE: images/s per batch size (3 counts)"
	(cd "$work" && INFERD_BENCH_DEVICE=$DEVICE INFERD_BENCH_MODEL=$m \
		timeout 300 ./gpu.test -test.run '^$' -test.bench BenchmarkRun -test.benchtime 2s -test.count 3) |
		tee "$OUT/raw-$m.txt"
done

step "inferd on $DEVICE"
maxb=64 inst=2
[ "$DEVICE" = cpu ] && maxb=8 inst=1
cat >"$work/inferd.yaml" <<YAML
listen: 127.0.0.1:8000
models:
  - name: resnet50
    path: builtin:resnet50
    device: $DEVICE
    instances: $inst
    max_batch: $maxb
YAML
cat "$work/inferd.yaml"
"$work/inferd" -config "$work/inferd.yaml" >"$OUT/inferd.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
	curl -fs -o /dev/null http://127.0.0.1:8000/v2/health/ready && break
	kill -0 $pid 2>/dev/null || break
	sleep 1
done
tail -5 "$OUT/inferd.log"
if curl -fs -o /dev/null http://127.0.0.1:8000/v2/health/ready; then
	step "loadtest: infer-binary, closed loop"
	cc=1,8,32,128
	[ "$DEVICE" = cpu ] && cc=1,8
	timeout 200 "$work/loadtest" sweep -model resnet50 -endpoint infer-binary -concurrencies $cc -duration 8s -format csv |
		tee "$OUT/sweep-infer-binary.csv"
	if [ -z "${QUICK:-}" ]; then
		step "loadtest: classify (JPEG decoding on $(nproc) cores, pure-Go decoder), closed loop"
		timeout 100 "$work/loadtest" sweep -model resnet50 -endpoint classify -concurrencies 16,64 -duration 8s -format csv |
			tee "$OUT/sweep-classify.csv"
	fi
	curl -s http://127.0.0.1:8000/metrics >"$OUT/metrics.txt"
fi
kill -TERM $pid 2>/dev/null
wait $pid
echo "inferd exit $?"
[ "$DEVICE" != cpu ] && nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv
step "done"
ls -la "$OUT"
