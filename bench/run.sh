#!/usr/bin/env bash
# bench/run.sh: the project's scoreboard. One run on this machine, every
# figure the median of $REPS repetitions, every ratio between figures of
# this run; it writes bench/README.md (or $OUT).
#
#   1. raw ONNX Runtime resnet50 per batch size (the limit)
#   2. inferd resnet50: closed loop at concurrency 1, 8, 32 and the slo rate
#   3. the same load on bench/baseline (one image, one inference per request)
#   4. tiny model, 224x224 binary inputs: inferd vs bench/httpceiling
#
# Needs INFERD_ORT_LIB (make bench sets it). Knobs: REPS (3), DURATION
# (10s), CONCURRENCIES (1,8,32), SLO_P99 (500ms), SLO_WINDOW (4s),
# CEIL_CONCURRENCY (16), BENCH_PORT (18700; it and the next two are used).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${INFERD_ORT_LIB:?set INFERD_ORT_LIB to libonnxruntime.so (make bench does)}"
REPS=${REPS:-3}
DURATION=${DURATION:-10s}
CONCURRENCIES=${CONCURRENCIES:-1,8,32}
SLO_P99=${SLO_P99:-500ms}
SLO_WINDOW=${SLO_WINDOW:-4s}
CEIL_CONCURRENCY=${CEIL_CONCURRENCY:-16}
PORT=${BENCH_PORT:-18700}
OUT=${OUT:-bench/README.md}

INFERD_URL=http://127.0.0.1:$PORT
BASELINE_URL=http://127.0.0.1:$((PORT + 1))
CEILING_URL=http://127.0.0.1:$((PORT + 2))

work=$(mktemp -d)
pids=()
cleanup() {
	stop_servers
	rm -rf "$work"
}
trap cleanup EXIT

log() { echo "bench: $*" >&2; }

started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
commands=()

# record CMD...: run a command, remembering it for the README.
record() {
	commands+=("${*//$work\//}")
	"$@"
}

# start_server URL READY_PATH CMD...: start a server in the background and
# wait (up to 300 s: the first run generates resnet50) until it answers.
start_server() {
	local url=$1 path=$2 log=$work/server-${#pids[@]}.log pid
	shift 2
	commands+=("${*//$work\//} &")
	"$@" >"$log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 600); do
		if curl -fs -o /dev/null "$url$path"; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			cat "$log" >&2
			echo "bench: $1 exited" >&2
			exit 1
		fi
		sleep 0.5
	done
	cat "$log" >&2
	echo "bench: $1 not ready after 300s" >&2
	exit 1
}

stop_servers() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	pids=()
}

# merge FILES...: one CSV with the first header only.
merge() {
	head -1 "$1"
	tail -qn +2 "$@"
}

# column CSV KEYCOL KEY COL: the values of COL in rows whose KEYCOL is KEY.
column() {
	awk -F, -v k="$2" -v key="$3" -v c="$4" '
		NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
		$h[k] == key { print $h[c] }' "$1"
}

# median: the median of the numbers on stdin ("n/a" for none).
median() {
	sort -g | awk '{ a[NR] = $1 }
		END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# runs: the numbers on stdin joined with ", ".
runs() { paste -sd, - | sed 's/,/, /g'; }

# fmt1 X / fmt0 X: X with one or no decimals ("n/a" stays).
fmt1() { awk -v x="$1" 'BEGIN { if (x == "n/a") print x; else printf "%.1f", x }'; }
fmt0() { awk -v x="$1" 'BEGIN { if (x == "n/a") print x; else printf "%.0f", x }'; }
# ratio A B: A/B to two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }

log "building"
go build -o "$work/" ./cmd/inferd ./cmd/loadtest ./bench/baseline ./bench/httpceiling
LT=$work/loadtest

# 1. Raw ONNX Runtime, once per repetition beside the server runs.
export INFERD_BENCH_MODEL=resnet50 INFERD_BENCH_DEVICE=cpu
go test -c -o "$work/gpu.test" ./gpu/
raw() {
	commands+=("INFERD_BENCH_MODEL=resnet50 INFERD_BENCH_DEVICE=cpu go test -run '^\$' -bench BenchmarkRun -benchtime 20x -count 1 ./gpu/")
	(cd gpu && "$work/gpu.test" -test.run '^$' -test.bench BenchmarkRun -test.benchtime 20x -test.count 1) | tee -a "$work/raw.txt" >&2
}

# 2. inferd: resnet50 and tiny, max_batch 8, on cpu.
cat >"$work/inferd.yaml" <<EOF
listen: 127.0.0.1:$PORT
models:
  - name: resnet50
    path: builtin:resnet50
    device: cpu
    max_batch: 8
  - name: tiny
    path: builtin:tiny
    device: cpu
    max_batch: 8
EOF
commands+=("# inferd.yaml: resnet50 and tiny (builtin), device cpu, max_batch 8, every other setting default")

# closed NAME URL REP: the closed-loop sweep on resnet50 classify.
closed() {
	record "$LT" sweep -url "$2" -model resnet50 -endpoint classify -concurrencies "$CONCURRENCIES" \
		-duration "$DURATION" -format csv >"$work/closed-$1-$3.csv"
}

# slo NAME URL REP: the slo search on resnet50 classify; prints the rate.
slo() {
	record "$LT" slo -url "$2" -model resnet50 -endpoint classify -p99 "$SLO_P99" -max-error-rate 0.01 \
		-start-rate 8 -window "$SLO_WINDOW" -max-windows 3 -precision 0.1 >"$work/slo-$1-$3.txt"
	sed -n 's|^slo rate: \([0-9.e+]*\)/s.*|\1|p' "$work/slo-$1-$3.txt" >>"$work/slo-$1.txt"
}

# tiny NAME URL REP: the closed loop with binary 224x224 inputs on tiny.
tiny() {
	record "$LT" attack -url "$2" -model tiny -endpoint infer-binary -concurrency "$CEIL_CONCURRENCY" \
		-duration "$DURATION" -format csv >"$work/tiny-$1-$3.csv"
}

# The three servers run side by side, idle but for the one under load (ONNX
# Runtime's threads do not spin), and the repetitions interleave them, so a
# change in the machine's background load falls on all of them alike.
log "starting inferd, baseline and httpceiling"
start_server "$INFERD_URL" /v2/health/ready "$work/inferd" -config "$work/inferd.yaml"
start_server "$BASELINE_URL" /v2/health/live "$work/baseline" -listen "127.0.0.1:$((PORT + 1))" -arch resnet50
start_server "$CEILING_URL" /v2/models/tiny "$work/httpceiling" -listen "127.0.0.1:$((PORT + 2))"
for rep in $(seq "$REPS"); do
	log "repetition $rep/$REPS: raw ONNX Runtime resnet50"
	raw
	log "repetition $rep/$REPS: resnet50 closed loop $CONCURRENCIES (inferd, baseline)"
	closed inferd "$INFERD_URL" "$rep"
	closed baseline "$BASELINE_URL" "$rep"
	log "repetition $rep/$REPS: resnet50 slo (inferd, baseline)"
	slo inferd "$INFERD_URL" "$rep"
	slo baseline "$BASELINE_URL" "$rep"
	log "repetition $rep/$REPS: tiny binary, concurrency $CEIL_CONCURRENCY (inferd, httpceiling)"
	tiny inferd "$INFERD_URL" "$rep"
	tiny ceiling "$CEILING_URL" "$rep"
done
stop_servers
awk '/^BenchmarkRun/ {
		match($1, /batch=[0-9]+/); b = substr($1, RSTART + 6, RLENGTH - 6)
		for (i = 2; i < NF; i++) if ($(i + 1) == "images/s") print b "," $i
	}' "$work/raw.txt" >"$work/raw.csv"

for name in inferd baseline; do
	merge "$work"/closed-$name-*.csv >"$work/closed-$name.csv"
done
for name in inferd ceiling; do
	merge "$work"/tiny-$name-*.csv >"$work/tiny-$name.csv"
done

# med FILE KEYCOL KEY COL: the median of a column.
med() { column "$@" | median; }

# rep_ratios A B KEYCOL KEY COL: COL of A's over B's, repetition by
# repetition (files $work/A-REP.csv), one per line.
rep_ratios() {
	local rep a b
	for rep in $(seq "$REPS"); do
		a=$(column "$work/$1-$rep.csv" "$3" "$4" "$5")
		b=$(column "$work/$2-$rep.csv" "$3" "$4" "$5")
		awk -v a="$a" -v b="$b" 'BEGIN { if (a != "" && b != "" && b != 0) printf "%.2f\n", a / b }'
	done
}

# ratios: "MEDIANx (r1, r2, r3)" of the ratios on stdin.
ratios() {
	local v
	v=$(cat)
	echo "**$(echo "$v" | median | xargs printf '%.2f')x** ($(echo "$v" | runs))"
}

elapsed=$(($(date +%s) - started))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(lscpu | awk -F: '/Model name/ { sub(/^ +/, "", $2); print $2; exit }')
mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . 2>/dev/null || commit="$commit (with uncommitted changes)"

{
	echo "# inferd benchmarks"
	echo
	echo "Generated by \`make bench\` (bench/run.sh) in one run of ${elapsed}s. Every figure is the"
	echo "median of $REPS repetitions; every ratio is between figures of this run."
	echo
	echo "- Machine: $cpu, nproc $(nproc), $mem; $(. /etc/os-release && echo "$PRETTY_NAME"), no GPU;"
	echo "  load average (1, 5, 15 min) $load_start at the start, $load_end at the end"
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- Commit: $commit"
	echo "- $(go version | cut -d' ' -f3-); ONNX Runtime: $(basename "$(readlink -f "$INFERD_ORT_LIB")")"
	echo "- Load: \`loadtest\` (cmd/loadtest, vegeta's attack library) on the same machine: the"
	echo "  client shares the $(nproc) cores with the server it measures."
	if awk -v l="${load_start%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
		echo "- **Noisy run**: the machine was shared (load average above half its core"
		echo "  count before this run started); the runs columns show the spread. Compare figures"
		echo "  within this file only, and medians only."
	fi
	echo "- Windows of $DURATION; resnet50 requests are generated 256x256 JPEGs posted to"
	echo "  \`/v2/models/resnet50/classify\` (decode, resize to 256, crop 224, infer)."
	echo
	echo "## 1. Raw ONNX Runtime, resnet50 fp32 (the limit)"
	echo
	echo "One session, \`Lease.Run\` in a loop: no HTTP, no decoding, no batching logic. Run"
	echo "once per repetition, between the server runs, so it sees the same machine they do."
	echo
	echo "| batch | runs (images/s) | median images/s |"
	echo "|---:|---|---:|"
	for b in $(cut -d, -f1 "$work/raw.csv" | sort -nu); do
		vals=$(awk -F, -v b="$b" '$1 == b { print $2 }' "$work/raw.csv")
		echo "| $b | $(echo "$vals" | runs) | **$(fmt1 "$(echo "$vals" | median)")** |"
	done
	raw_best=$(cut -d, -f1 "$work/raw.csv" | sort -nu | while read -r b; do
		awk -F, -v b="$b" '$1 == b { print $2 }' "$work/raw.csv" | median
	done | sort -g | tail -1)
	echo
	echo "## 2 and 3. resnet50 classify: inferd against the one-image-per-inference baseline"
	echo
	echo "inferd: dynamic batching, max_batch 8. Baseline (bench/baseline): Go net/http, one"
	echo "image decoded and one inference run per request on one session (MaxBatch 1), the"
	echo "two-service Flask design's shape without its Python. Closed loop: N requests in flight."
	echo "Server columns are inferd's own metrics over the same window (the baseline has none)."
	echo
	echo "| load | server | throughput req/s (runs) | p50 ms | p99 ms | mean batch | queue p99 ms | compute p99 ms | of raw limit |"
	echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
	for c in ${CONCURRENCIES//,/ }; do
		for name in inferd baseline; do
			f=$work/closed-$name.csv
			tp=$(med "$f" concurrency "$c" throughput)
			batch=$(med "$f" concurrency "$c" server_mean_batch)
			qp99=$(med "$f" concurrency "$c" server_queue_p99_ms)
			cp99=$(med "$f" concurrency "$c" server_compute_p99_ms)
			[ "$name" = baseline ] && batch=- qp99=- cp99=-
			echo "| c=$c | $name | **$(fmt1 "$tp")** ($(column "$f" concurrency "$c" throughput | xargs -n1 printf '%.1f\n' | runs)) |" \
				"$(fmt1 "$(med "$f" concurrency "$c" p50_ms)") | $(fmt1 "$(med "$f" concurrency "$c" p99_ms)") |" \
				"$([ "$batch" = - ] && echo - || printf '%.2f' "$batch") | $([ "$qp99" = - ] && echo - || fmt1 "$qp99") |" \
				"$([ "$cp99" = - ] && echo - || fmt1 "$cp99") | $(ratio "$tp" "$raw_best") |"
		done
	done
	echo
	echo "**slo rate**: the highest open-loop rate whose p99 stays at or under $SLO_P99 with"
	echo "under 1% errors (\`loadtest slo\`: from 8/s, doubling while the rate passes or"
	echo "halving while it fails, then bisection to 10%; each rate measured in $SLO_WINDOW windows"
	echo "until two consecutive ones agree within 10% on p99 and throughput, at most 3; a"
	echo "window far from the line settles it at once)."
	echo
	echo "| server | slo rate req/s (runs) |"
	echo "|---|---|"
	for name in inferd baseline; do
		echo "| $name | **$(fmt1 "$(median <"$work/slo-$name.txt")")** ($(xargs -n1 printf '%.3g\n' <"$work/slo-$name.txt" | runs)) |"
	done
	echo
	echo "inferd over baseline. The machine's background load drifts between repetitions,"
	echo "and each repetition ran both servers back to back, so the ratio taken within each"
	echo "repetition (median, then the runs) is the steadier figure; the ratio of the medians"
	echo "is beside it."
	echo
	echo "| figure | inferd | baseline | ratio of medians | ratio per repetition |"
	echo "|---|---:|---:|---:|---|"
	for c in ${CONCURRENCIES//,/ }; do
		a=$(med "$work/closed-inferd.csv" concurrency "$c" throughput)
		b=$(med "$work/closed-baseline.csv" concurrency "$c" throughput)
		echo "| throughput c=$c | $(fmt1 "$a") | $(fmt1 "$b") | $(ratio "$a" "$b") |" \
			"$(rep_ratios closed-inferd closed-baseline concurrency "$c" throughput | ratios) |"
		a=$(med "$work/closed-inferd.csv" concurrency "$c" p99_ms)
		b=$(med "$work/closed-baseline.csv" concurrency "$c" p99_ms)
		echo "| p99 ms c=$c | $(fmt1 "$a") | $(fmt1 "$b") | $(ratio "$a" "$b") |" \
			"$(rep_ratios closed-inferd closed-baseline concurrency "$c" p99_ms | ratios) |"
	done
	a=$(median <"$work/slo-inferd.txt")
	b=$(median <"$work/slo-baseline.txt")
	echo "| slo rate (p99 <= $SLO_P99) | $(fmt1 "$a") | $(fmt1 "$b") | $(ratio "$a" "$b") |" \
		"$(paste -d, "$work/slo-inferd.txt" "$work/slo-baseline.txt" |
			awk -F, '$1 != "" && $2 > 0 { printf "%.2f\n", $1 / $2 }' | ratios) |"
	echo
	echo "## 4. HTTP ceiling: tiny model, 224x224 float32 binary inputs"
	echo
	echo "Closed loop at concurrency $CEIL_CONCURRENCY, KServe v2 binary tensor extension"
	echo "(602,112-byte tensor in, 4,000 bytes out). The ceiling (bench/httpceiling) is a bare"
	echo "fasthttp handler answering the same requests with a canned response of the same size."
	echo
	echo "| server | throughput req/s (runs) | p50 ms | p99 ms | mean batch |"
	echo "|---|---|---:|---:|---:|"
	key="closed concurrency $CEIL_CONCURRENCY"
	for name in inferd ceiling; do
		f=$work/tiny-$name.csv
		batch=$(med "$f" mode "$key" server_mean_batch)
		[ "$name" = ceiling ] && batch=-
		echo "| $name | **$(fmt0 "$(med "$f" mode "$key" throughput)")** ($(column "$f" mode "$key" throughput | xargs -n1 printf '%.0f\n' | runs)) |" \
			"$(fmt1 "$(med "$f" mode "$key" p50_ms)") | $(fmt1 "$(med "$f" mode "$key" p99_ms)") |" \
			"$([ "$batch" = - ] && echo - || printf '%.2f' "$batch") |"
	done
	a=$(med "$work/tiny-inferd.csv" mode "$key" throughput)
	b=$(med "$work/tiny-ceiling.csv" mode "$key" throughput)
	echo
	echo "inferd reaches $(ratio "$a" "$b") of the HTTP ceiling's throughput with this payload"
	echo "(ratio of the medians; per repetition: $(rep_ratios tiny-inferd tiny-ceiling mode "$key" throughput | ratios))."
	echo
	echo "## Commands"
	echo
	echo "The servers, then one repetition's commands in order (the script runs $REPS; binaries"
	echo "built with \`go build ./cmd/inferd ./cmd/loadtest ./bench/baseline ./bench/httpceiling\`):"
	echo
	echo '```'
	printf '%s\n' "${commands[@]}" | awk '!seen[$0]++' 
	echo '```'
} >"$OUT"
log "wrote $OUT in ${elapsed}s"
