#!/usr/bin/env bash
# A GPU visit in one run (bench/gpu/README.md): on the GPU host, from the
# repository root, with .gpu/pack (bench/gpu/prepare.sh) carried in the same
# call. It needs bash, coreutils, python3 (and PyTorch for the ceiling); no
# Go, curl or xz. What comes back is three files in $OUT: summary.md (every
# figure in one table), visit.log (all that was printed) and details.tar.gz
# (configs, logs, profiles, csv, /metrics).
#
#   bash bench/gpu/visit.sh                     the visit, about 7 minutes
#   DEVICE=cpu OUT=/tmp/visit bash bench/gpu/visit.sh    the dry run here
#
# It starts with a smoke step of at most 60 s that ends the visit with a
# report when CUDA cannot run the tiny model with every node on the GPU.
# Then, in this order, each step only while the time budget lasts (later
# ones are skipped and say so):
#   torch      the PyTorch ceiling and the 38.5 MB host-to-device copy
#   raw        raw ONNX Runtime (gpu.test BenchmarkRun) per model and knob
#   inferd     inferd under loadtest: infer-binary and classify sweeps
#   variants   fp16, NHWC, uint8 input, HEURISTIC search, through inferd
#   instances  the inferd sweeps again with 1 and 4 instances
#   pinned     the inferd sweeps with pinned host buffers off
#   profile    a profiled pass of the fp16 model: the provider of its nodes
#
# Knobs: DEVICE (cuda:0), OUT (.gpu/out), PACK (.gpu/pack), BUDGET (seconds
# for the steps after the smoke step: 420 on cuda, 300 on cpu), STEPS (the
# steps to run, e.g. STEPS="instances pinned" for a second visit), ORT_DIR
# (an ONNX Runtime folder instead of the pack's), RELAY=1 (the fallback: the
# library arrived in pieces, see README.md), PYTHON (python3).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(pwd)
DEVICE=${DEVICE:-cuda:0}
OUT=${OUT:-$root/.gpu/out}
if [ -z "${PACK:-}" ]; then
	PACK=$root/.gpu/pack
	[ -f "$here/../bin.tar.xz" ] && PACK=$(cd "$here/.." && pwd) # run from a pack's scripts/
fi
STEPS=${STEPS:-torch raw inferd variants instances pinned profile}
PY=${PYTHON:-python3}
gpu=1
[ "$DEVICE" = cpu ] && gpu=0
BUDGET=${BUDGET:-$([ $gpu = 1 ] && echo 420 || echo 300)}

mkdir -p "$OUT"
work=$(mktemp -d "${TMPDIR:-/tmp}/inferd-visit.XXXXXX")
details=$work/details
mkdir -p "$details"
exec > >(tee "$OUT/visit.log") 2>&1
teepid=$!
start=$SECONDS
t0=$SECONDS
skipped=()
py() { "$PY" "$here/visit.py" "$@"; }

# finish writes summary.md and details.tar.gz, whatever happened before.
finish() {
	local rc=$?
	trap - EXIT
	[ -n "${pid:-}" ] && stop
	py meta "$details" "elapsed=$((SECONDS - start)) s (budget: 60 s smoke, then ${BUDGET} s)" \
		"steps skipped=${skipped[*]:-none}" "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
	cp "$work"/*.txt "$details"/ 2>/dev/null
	py summary "$details" "$OUT/summary.md"
	py archive "$details" "$OUT/details.tar.gz"
	printf '\n== summary.md\n'
	cat "$OUT/summary.md"
	printf '\n== %s: %s\n' "$OUT" "$(cd "$OUT" && ls | tr '\n' ' ')"
	rm -rf "$work"
	exec >&- 2>&-
	wait "$teepid" 2>/dev/null
	exit "$rc"
}
trap finish EXIT

header() { printf '\n== %s (%s, %ds in)\n' "$*" "$(date -u +%H:%M:%S)" "$((SECONDS - t0))"; }

skip() { # skip STEP REASON
	echo "skipped: $1: $2"
	skipped+=("$1")
	py record "$details" skipped "$1" skipped "" "$2"
}

# begin STEP TYPICAL_SECONDS [TITLE]: whether the step runs now. Every
# command in a step has its own timeout (90 s at most), so a step that
# starts inside the budget ends at most that far past it.
begin() {
	local name=$1 typical=$2 title=${3:-$1}
	local group=${name%%/*}
	if [[ " $STEPS " != *" $group "* ]]; then
		skip "$name" "not in STEPS"
		return 1
	fi
	local left=$((BUDGET - (SECONDS - t0)))
	if ((typical > left)); then
		skip "$name" "time budget: ${left}s left of ${BUDGET}s, it takes about ${typical}s (run again with STEPS=\"$group\")"
		return 1
	fi
	header "$title"
}

smoke_fail() {
	echo "SMOKE FAILED: $*"
	echo "The visit stops here: nothing after this step would measure the GPU."
	py record "$details" smoke "result" FAILED "" "$*"
	py meta "$details" "smoke=FAILED: $*"
	exit 1
}

header "inferd GPU visit on $DEVICE: pack $PACK, out $OUT"
py meta "$details" "device=$DEVICE" "title=inferd on $DEVICE"
[ -f "$PACK/MANIFEST" ] && { sed -n '1,12p' "$PACK/MANIFEST"; cp "$PACK/MANIFEST" "$details/"; py meta "$details" "pack=$(sed -n 's/^built: //p' "$PACK/MANIFEST")"; }
py unpack "$PACK" "$work" || exit 1
bin=$work/bin
if [ -n "${RELAY:-}" ]; then
	ortx=${ORTX:-/opt/ortx}
	mkdir -p "$ortx"
	cp .gpu/c4/ort.tar.xz.* "$ortx"/ 2>/dev/null
	py relay "$ortx" || exit 1
	ORT_DIR=$ortx/ort
fi
ORT_DIR=$(cd "${ORT_DIR:-$work/ort}" && pwd) || { echo "visit: no ONNX Runtime in the pack (RELAY=1 or ORT_DIR)"; exit 1; }
export INFERD_ORT_LIB=$ORT_DIR/libonnxruntime.so.1
arch=$(sed -n 's/^arch: sm_//p' "$PACK/MANIFEST" 2>/dev/null)
nproc
grep -m1 'model name' /proc/cpuinfo

# ---------------------------------------------------------------- smoke
# At most 60 s: the GPU, the CUDA libraries, the provider's links, then the
# tiny model on the device with every node's provider read from ORT's
# profile. A failure ends the visit here with a report.
header "smoke (60 s at most)"
smoke_end=$((SECONDS + 60))
left() { local l=$((smoke_end - SECONDS)); echo $((l > 1 ? l : 1)); }
if [ $gpu = 1 ]; then
	timeout 15 nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm,power.limit --format=csv |
		tee "$details/gpu.csv" || smoke_fail "nvidia-smi failed: no usable GPU driver"
	name=$(sed -n 2p "$details/gpu.csv" | cut -d, -f1)
	cap=$(sed -n 2p "$details/gpu.csv" | cut -d, -f2 | tr -d ' .')
	py meta "$details" "gpu=$(sed -n 2p "$details/gpu.csv")"
	py record "$details" host GPU "$name" "" "$(sed -n 2p "$details/gpu.csv")"
	if [ -n "$arch" ] && [ "$cap" != "$arch" ]; then
		smoke_fail "this GPU is sm_$cap; the pack's CUDA provider carries sm_$arch code only: run ARCH=$cap bench/gpu/prepare.sh"
	fi
else
	echo "skipped: nvidia-smi: no GPU"
fi
libdirs=$(timeout "$(left)" "$PY" "$here/visit.py" cudalibs "$details")
export LD_LIBRARY_PATH=${libdirs:+$libdirs:}$ORT_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
getconf GNU_LIBC_VERSION
timeout "$(left)" ldd "$ORT_DIR/libonnxruntime_providers_cuda.so" | tee "$details/ldd-provider.txt"
notfound=$(grep 'not found' "$details/ldd-provider.txt" | awk '{print $1}' | tr '\n' ' ')
if [ $gpu = 1 ]; then
	[ -z "$notfound" ] || smoke_fail "the CUDA provider cannot find $notfound(searched: ${libdirs:-no CUDA folder found}; pip install the CUDA 13 wheels or set LD_LIBRARY_PATH)"
	missing=$("$PY" -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["missing"]))' "$details/cuda.json")
	[ -z "$missing" ] || smoke_fail "$missing not found (searched: ${libdirs:-no CUDA folder found}); cuDNN is opened at run time, so ldd does not show it"
fi

# smokerun DEV LOG [PROFILE]: the tiny model through gpu.test on DEV.
smokerun() {
	(cd "$work" && env INFERD_BENCH_DEVICE="$1" INFERD_BENCH_MODEL=tiny ${3:+INFERD_BENCH_PROFILE="$3"} \
		timeout "$(left)" "$bin/gpu.test" -test.run '^$' -test.bench BenchmarkRun -test.benchtime 1x) >"$2" 2>&1
}
if [ $gpu = 1 ]; then
	smokerun "$DEVICE" "$details/smoke-tiny.txt" "$details/profile-smoke" ||
		{ tail -20 "$details/smoke-tiny.txt"; smoke_fail "the tiny model did not run on $DEVICE: $(grep -m1 -E 'Open|error|Error' "$details/smoke-tiny.txt")"; }
	py providers "$details" "tiny on $DEVICE" CUDAExecutionProvider --strict "$details"/profile-smoke*.json ||
		smoke_fail "some nodes of the tiny model did not run on the CUDA provider"
else
	# No GPU: the core must still load the pack's CUDA provider, up to the
	# first CUDA library it lacks; an ELF or format error would mean the
	# reduced provider is broken.
	smokerun cuda:0 "$details/smoke-cuda-load.txt" && smoke_fail "CUDA ran on a machine said to have no GPU: run without DEVICE=cpu"
	loaderr=$(grep -m1 -oE 'library [^ ]*libonnxruntime_providers_cuda.so with error: [^(]*' "$details/smoke-cuda-load.txt")
	echo "load check: $loaderr"
	if ! grep -qE 'with error: lib(cublasLt|cublas|cudart|curand|cuda|cudnn|cufft)\.so\.[0-9]+: cannot open shared object file' <<<"$loaderr"; then
		tail -5 "$details/smoke-cuda-load.txt"
		smoke_fail "the core did not load the pack's CUDA provider up to a missing CUDA library"
	fi
	py record "$details" smoke "provider load (no GPU)" "up to the CUDA libraries" "" "$loaderr"
	smokerun cpu "$details/smoke-tiny.txt" "$details/profile-smoke" ||
		{ tail -20 "$details/smoke-tiny.txt"; smoke_fail "the tiny model did not run on cpu"; }
	py providers "$details" "tiny on cpu" CPUExecutionProvider --strict "$details"/profile-smoke*.json ||
		smoke_fail "some nodes of the tiny model did not run on the CPU provider"
fi
took=$((SECONDS - smoke_end + 60))
py record "$details" smoke result passed "" "in $took s"
py meta "$details" "smoke=passed in $took s"
echo "smoke: passed in $took s"
t0=$SECONDS # the budget counts from here

# ---------------------------------------------------------------- torch
if [ $gpu = 0 ]; then
	skip torch "no GPU"
elif begin torch 40 "PyTorch ceiling: resnet50 fp16 channels_last with CUDA graphs; the 38.5 MB copy"; then
	timeout 90 "$PY" "$here/visit.py" torch "$details" 2>&1 | tee "$details/torch.txt"
fi

# ---------------------------------------------------------------- raw ORT
# gpu.test's BenchmarkRun: images/s at batch 1, 8, 32, 64, 128 (1, 4, 16 on
# cpu). Knobs it does not read yet are skipped, naming the knob.
benchtime=1s
[ $gpu = 0 ] && benchtime=100ms
knobs=()
for k in INFERD_BENCH_INSTANCES INFERD_BENCH_SEED INFERD_BENCH_NHWC INFERD_BENCH_SEARCH INFERD_BENCH_LOG; do
	py has "$bin/gpu.test" "$k" && knobs+=("$k")
done
echo "gpu.test reads: ${knobs[*]:-none of the issue 10 knobs}"
has_knob() { [[ " ${knobs[*]:-} " == *" $1 "* ]]; }
rawnote="inputs $(has_knob INFERD_BENCH_SEED && echo 'seeded random' || echo 'zero-filled (gpu.test lacks INFERD_BENCH_SEED)')"
if [ $gpu = 1 ]; then
	rawnote="$rawnote; $(has_knob INFERD_BENCH_INSTANCES && echo '1 instance' || echo '2 instances opened, 1 timed (gpu.test lacks INFERD_BENCH_INSTANCES)')"
fi
py record "$details" "raw ORT" "how" "gpu.test BenchmarkRun" "" "$rawnote"
# raw NAME MODEL [ENV=VALUE...]
raw() {
	local name=$1 model=$2
	shift 2
	(cd "$work" && env INFERD_BENCH_DEVICE="$DEVICE" INFERD_BENCH_MODEL="$model" INFERD_BENCH_INSTANCES=1 \
		INFERD_BENCH_SEED=1 INFERD_BENCH_LOG=1 "$@" \
		timeout 90 "$bin/gpu.test" -test.run '^$' -test.bench BenchmarkRun -test.benchtime $benchtime) \
		>"$details/raw-$name.txt" 2>&1
	grep -E '^Benchmark|FAIL|opened' "$details/raw-$name.txt"
	py bench "$details" "$details/raw-$name.txt" "$name" ||
		py record "$details" "raw ORT $DEVICE" "$name" "" "" "failed: $(grep -m1 -E 'FAIL|Error|error' "$details/raw-$name.txt")"
	has_knob INFERD_BENCH_LOG && py opened "$details" "raw $name" "$details/raw-$name.txt"
}
if [ $gpu = 1 ]; then
	begin raw/fp32 45 "raw ONNX Runtime: resnet50 fp32 NCHW, EXHAUSTIVE" && raw resnet50 resnet50
	# The same with Go (pageable) host buffers: what cuda.pinned_memory buys
	# in ONNX Runtime alone, beside the inferd sweeps' pinned step.
	begin raw/fp32-pageable 45 "raw ONNX Runtime: resnet50 fp32 NCHW, pageable host buffers" &&
		raw resnet50-pageable resnet50 INFERD_BENCH_PINNED=off
	begin raw/fp16 45 "raw ONNX Runtime: resnet50 fp16, prefer_nhwc off" && raw resnet50-fp16 resnet50-fp16
	if ! has_knob INFERD_BENCH_NHWC; then
		skip raw/fp16-nhwc "gpu.test lacks INFERD_BENCH_NHWC (a gpu/ change of issue 10); see the variants step"
		skip raw/fp16-uint8-nhwc "gpu.test lacks INFERD_BENCH_NHWC"
	else
		begin raw/fp16-nhwc 45 "raw ONNX Runtime: resnet50 fp16, prefer_nhwc on" && raw resnet50-fp16-nhwc resnet50-fp16 INFERD_BENCH_NHWC=1
		begin raw/fp16-uint8-nhwc 45 "raw ONNX Runtime: resnet50 fp16, uint8 NHWC input, prefer_nhwc on" &&
			raw resnet50-fp16-uint8-nhwc resnet50-fp16-uint8 INFERD_BENCH_NHWC=1
	fi
	if ! has_knob INFERD_BENCH_SEARCH; then
		skip raw/heuristic "gpu.test lacks INFERD_BENCH_SEARCH (a gpu/ change of issue 10); see the variants step"
	else
		begin raw/heuristic 45 "raw ONNX Runtime: resnet50 fp32, HEURISTIC" && raw resnet50-heuristic resnet50 INFERD_BENCH_SEARCH=HEURISTIC
	fi
else
	begin raw/tiny 10 "raw ONNX Runtime: tiny on cpu" && raw tiny tiny
fi

# ---------------------------------------------------------------- inferd
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
pid=
# serve NAME MODEL_PATH INSTANCES MAX_BATCH [CUDA_YAML]: starts inferd and
# waits (90 s at most) until it is ready.
serve() {
	local name=$1 path=$2 inst=$3 maxb=$4 cuda=${5:-}
	local cfg=$details/inferd-$name.yaml
	cat >"$cfg" <<-YAML
		listen: 127.0.0.1:$port
		runtime:
		  library: $ORT_DIR/libonnxruntime.so.1
		  model_dir: $work/models
		models:
		  - name: m
		    path: $path
		    device: $DEVICE
		    instances: $inst
		    max_batch: $maxb
	YAML
	[ -n "$cuda" ] && printf '    cuda:\n%s\n' "$cuda" >>"$cfg"
	"$bin/inferd" -config "$cfg" >"$details/inferd-$name.log" 2>&1 &
	pid=$!
	if ! py wait "$url/v2/health/ready" 90 "$pid"; then
		tail -15 "$details/inferd-$name.log"
		py record "$details" inferd "$name" "" "" "not ready: $(grep -m1 -E 'level=ERROR|error' "$details/inferd-$name.log" | cut -c1-200)"
		stop
		return 1
	fi
	grep -m1 'model opened' "$details/inferd-$name.log"
	py opened "$details" "$name" "$details/inferd-$name.log"
}
stop() {
	[ -n "${pid:-}" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=
}
# sweep NAME ENDPOINT CONCURRENCIES
sweep() {
	local f=$details/sweep-$1-$2.csv
	timeout 90 "$bin/loadtest" sweep -url "$url" -model m -endpoint "$2" -concurrencies "$3" -duration "$dur" -format csv >"$f"
	cat "$f"
	py sweep "$details" "$1 $2" "$f"
}
# telemetry NAME: inferd's GPU series (gpustat, through NVML) against
# nvidia-smi, both read at the same moment: utilisation, memory used and
# total, temperature checked within tolerances, power and SM clock shown
# beside. One row in the summary, every figure in telemetry-NAME.txt. It
# runs beside a sweep so that utilisation is not idle; it never stops the
# visit.
telemetry() {
	timeout 30 "$PY" - "$here" "$details" "$1" "$url/metrics" <<-'PY'
		import re, subprocess, sys, time, urllib.request
		here, details, name, url = sys.argv[1:5]
		sys.dont_write_bytecode = True
		sys.path.insert(0, here)
		from visit import record
		q = "index,uuid,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,clocks.sm"
		t0 = time.time()
		try:
		    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=" + q, "--format=csv,noheader,nounits"],
		                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
		except OSError as e:
		    smi = None
		    print("telemetry: nvidia-smi: %s" % e)
		try:
		    text = urllib.request.urlopen(url, timeout=10).read().decode()
		except Exception as e:
		    text = ""
		    print("telemetry: /metrics: %s" % e)
		t1 = time.time()
		out = smi.communicate(timeout=20)[0] if smi else ""
		t2 = time.time()
		series = {}  # uuid -> family -> value
		for m in re.finditer(r'^inferd_gpu_(\w+)\{[^}]*uuid="([^"]*)"[^}]*\} (\S+)$', text, re.M):
		    series.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
		nseries = sum(len(v) for v in series.values())
		def num(v):
		    try:
		        return float(v)
		    except ValueError:
		        return None  # [N/A], [Not Supported]
		# name, inferd family, inferd scale to nvidia-smi's unit, tolerance
		# (absolute, in nvidia-smi's unit, as a function of its value; None:
		# shown, not checked), unit.
		checks = [
		    ("util", "utilization_ratio", 100, lambda v: 15, "%"),
		    ("mem used", "memory_used_bytes", 2**-20, lambda v: max(256, 0.02 * v), "MiB"),
		    ("mem total", "memory_total_bytes", 2**-20, lambda v: 0.01 * v, "MiB"),
		    ("temp", "temperature_celsius", 1, lambda v: 3, "C"),
		    ("power", "power_watts", 1, None, "W"),
		    ("SM clock", "sm_clock_hertz", 1e-6, None, "MHz"),
		]
		lines, notes, bad, checked = [], [], [], 0
		for row in out.strip().splitlines():
		    f = [x.strip() for x in row.split(",")]
		    if len(f) != 8 or not f[0].isdigit():
		        lines.append("nvidia-smi: " + row)
		        bad.append("nvidia-smi output")
		        continue
		    idx, uuid, vals = f[0], f[1], [num(x) for x in f[2:]]
		    got = series.get(uuid)
		    if not got:
		        bad.append("gpu%s: no series" % idx)
		        lines.append("gpu%s %s: nvidia-smi %s; no inferd_gpu_ series for this uuid" % (idx, uuid, f[2:]))
		        continue
		    parts = []
		    for (what, fam, scale, tol, unit), want in zip(checks, vals):
		        have = got.get(fam)
		        have = None if have is None else have * scale
		        verdict = "shown"
		        if tol is not None:
		            if have is None or want is None:
		                verdict = "MISSING" if want is not None else "n/a"
		            else:
		                checked += 1
		                verdict = "ok" if abs(have - want) <= tol(want) else "MISMATCH"
		            if verdict in ("MISSING", "MISMATCH"):
		                bad.append("gpu%s %s" % (idx, what))
		        h = "-" if have is None else "%.0f" % have
		        w = "-" if want is None else "%.0f" % want
		        lines.append("gpu%s %-9s inferd %10s  nvidia-smi %10s %-3s  %s" % (idx, what, h, w, unit, verdict))
		        parts.append("%s %s/%s %s" % (what, h, w, unit))
		    notes.append("gpu%s: %s" % (idx, ", ".join(parts)))
		verdict = "MISMATCH" if bad else ("ok" if checked else "no GPU")
		head = ["telemetry %s: %d inferd_gpu_ series; /metrics read at +%.2fs, nvidia-smi done at +%.2fs" % (name, nseries, t1 - t0, t2 - t0),
		        "tolerances: util 15 points, memory used max(256 MiB, 2%), total 1%, temperature 3 C; power and SM clock shown"]
		with open("%s/telemetry-%s.txt" % (details, name), "w") as fp:
		    fp.write("\n".join(head + lines + ["", "nvidia-smi --query-gpu=" + q, out, "/metrics (inferd_gpu_):"] +
		                       [l for l in text.splitlines() if "inferd_gpu_" in l]) + "\n")
		print("\n".join(head + lines))
		record(details, "telemetry", "%s: inferd_gpu_ vs nvidia-smi" % name, verdict, "",
		       "; ".join(notes + (["problems: " + ", ".join(bad)] if bad else [])) +
		       " (inferd/nvidia-smi, %d series, %d checks, read %.2f s apart)" % (nseries, checked, t2 - t0))
	PY
}
# measure NAME MODEL_PATH INSTANCES MAX_BATCH CUDA_YAML: the full sweeps,
# with the GPU telemetry checked 5 s into the first (under load).
measure() {
	serve "$1" "$2" "$3" "$4" "${5:-}" || return 0
	local tpid=
	if [ $gpu = 1 ]; then
		(sleep 5 && telemetry "$1") >"$work/telemetry-$1.out" 2>&1 &
		tpid=$!
	fi
	sweep "$1" infer-binary "$cc_binary"
	if [ -n "$tpid" ]; then
		wait "$tpid"
		cat "$work/telemetry-$1.out"
	fi
	sweep "$1" classify "$cc_classify"
	py fetch "$url/metrics" "$details/metrics-$1.txt"
	stop
}
if [ $gpu = 1 ]; then
	model=builtin:resnet50 mb=64 dur=3s cc_binary=1,8,32,128,256 cc_classify=16,64
else
	model=builtin:tiny mb=8 dur=2s cc_binary=1,8 cc_classify=4
fi
mname=${model#builtin:}
# Pinned host buffers (issue 10's cuda.pinned_memory): whether this inferd
# has the key, asked of its own strict config check.
pinned_yaml=
cat >"$work/probe.yaml" <<-YAML
	models:
	  - name: m
	    path: builtin:tiny
	    cuda:
	      pinned_memory: "on"
YAML
has_pinned=
if "$bin/inferd" -check-config -config "$work/probe.yaml" >"$work/probe.txt" 2>&1; then
	has_pinned=1
	if [ $gpu = 0 ]; then
		echo "inferd has cuda.pinned_memory; ignored on cpu, so the runs are not labelled pinned"
	else
		pinned_yaml='      pinned_memory: "on"'
		echo "inferd has cuda.pinned_memory: the sweeps run with it on, the pinned step with it off"
	fi
else
	echo "inferd has no cuda.pinned_memory: $(grep -m1 pinned "$work/probe.txt")"
fi
inst=2
[ $gpu = 0 ] && inst=1
begin inferd 60 "inferd on $DEVICE: $model, $inst instances, max_batch $mb" &&
	measure "$mname-i$inst-mb$mb${pinned_yaml:+-pinned}" "$model" $inst $mb "$pinned_yaml"

# ---------------------------------------------------------------- variants
# The precision, layout, input and search levers, each at the highest
# concurrency through inferd: open and warm-up times from its log, images/s
# and per-batch compute from the server's figures.
variant() { # variant NAME MODEL_PATH CUDA_YAML CONCURRENCY
	begin "variants/$1" 35 "variant $1: $2 ${3:+($(echo $3 | tr -s ' '))}" || return 0
	serve "$1-i$inst-mb$mb" "$2" $inst $mb "$3" || return 0
	sweep "$1-i$inst-mb$mb" infer-binary "$4"
	py fetch "$url/metrics" "$details/metrics-$1.txt"
	stop
}
if [ $gpu = 1 ]; then
	variant resnet50-heuristic builtin:resnet50 '      cudnn_conv_algo_search: HEURISTIC' 256
	variant resnet50-fp16 builtin:resnet50-fp16 '' 256
	variant resnet50-fp16-nhwc builtin:resnet50-fp16 '      prefer_nhwc: true' 256
	variant resnet50-fp16-uint8-nhwc builtin:resnet50-fp16-uint8 '      prefer_nhwc: true' 256
else
	variant tiny-uint8 builtin:tiny-uint8 '' 8
fi

# ---------------------------------------------------------------- instances
if [ $gpu = 0 ]; then
	skip instances "cpu dry run: one instance count"
else
	for i in 1 4; do
		begin "instances/$i" 60 "inferd on $DEVICE: $model, $i instances" &&
			measure "$mname-i$i-mb$mb${pinned_yaml:+-pinned}" "$model" $i $mb "$pinned_yaml"
	done
fi

# ---------------------------------------------------------------- pinned
if [ -z "$has_pinned" ]; then
	skip pinned "this inferd has no cuda.pinned_memory (issue 10's lever, not built yet)"
elif [ $gpu = 0 ]; then
	skip pinned "no GPU"
elif begin pinned 60 "inferd on $DEVICE: pinned host buffers off"; then
	measure "$mname-i$inst-mb$mb-pageable" "$model" $inst $mb '      pinned_memory: "off"'
fi

# ---------------------------------------------------------------- profile
if [ $gpu = 0 ]; then
	skip profile "no GPU (the smoke step profiled the tiny model)"
elif begin profile 40 "profiled pass of resnet50-fp16: the provider of every node"; then
	(cd "$work" && INFERD_BENCH_DEVICE=$DEVICE INFERD_BENCH_MODEL=resnet50-fp16 INFERD_BENCH_PROFILE=$details/profile-fp16 \
		timeout 90 "$bin/gpu.test" -test.run '^$' -test.bench BenchmarkRun -test.benchtime 1x) >"$details/profile-fp16.txt" 2>&1
	py providers "$details" "resnet50-fp16 on $DEVICE" CUDAExecutionProvider "$details"/profile-fp16*.json
	gzip -f "$details"/profile-fp16*.json
fi

[ $gpu = 1 ] && nvidia-smi --query-gpu=name,utilization.gpu,memory.used --format=csv
header "done"
exit 0
