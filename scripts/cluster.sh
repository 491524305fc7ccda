#!/usr/bin/env bash
# A local inferd cluster on loopback: a Consul dev agent, REPLICAS inferd
# replicas that register themselves, HAProxy balancing over Consul DNS, and
# Prometheus discovering the replicas through Consul.
#
#   scripts/cluster.sh up      start it (make cluster), print the URLs
#   scripts/cluster.sh down    stop exactly what `up` started (make cluster-down)
#   scripts/cluster.sh demo    up, a 15 s load test through HAProxy, down (make demo)
#   scripts/cluster.sh status  what is running
#
# Environment:
#   MODEL=tiny|resnet50   the model every replica serves (default tiny)
#   REPLICAS=3            number of replicas
#   PORT_BASE=18500       ports used, all on 127.0.0.1: Consul HTTP BASE,
#                         DNS BASE+1, serf BASE+2/+3, RPC BASE+4; HAProxy
#                         BASE+10, its stats and exporter BASE+11; Prometheus
#                         BASE+20; replicas BASE+30...
#   RUN_DIR=.run/cluster  pid files, logs, rendered configs
#   RATE=50 DURATION=15s  the demo's load
# Programs: bin/inferd (make build), haproxy (PATH), and Consul and
# Prometheus from $INFERD_CACHE/bin (scripts/build-tools.sh, run by make setup).
set -Eeuo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="${INFERD_CACHE:-$HOME/.cache/inferd}"
run="${RUN_DIR:-$root/.run/cluster}"
model="${MODEL:-tiny}"
replicas="${REPLICAS:-3}"
base="${PORT_BASE:-18500}"

consul_http=$base consul_dns=$((base + 1)) serf_lan=$((base + 2)) serf_wan=$((base + 3)) consul_rpc=$((base + 4))
hap_port=$((base + 10)) hap_stats=$((base + 11)) prom_port=$((base + 20)) replica_base=$((base + 30))

consul_bin="${INFERD_CONSUL:-$cache/bin/consul-1.14.11}"
prom_bin="${INFERD_PROMETHEUS:-$cache/bin/prometheus-2.55.1}"
inferd_bin="${INFERD_BIN:-$root/bin/inferd}"

log() { printf 'cluster: %s\n' "$*" >&2; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR
die() {
	log "$*"
	exit 1
}

# wait_http URL SECONDS NAME: polls until URL answers 2xx.
wait_http() {
	local url=$1 secs=$2 name=$3 i
	for ((i = 0; i < secs * 10; i++)); do
		if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
			return 0
		fi
		if [ -f "$run/$name.pid" ] && ! kill -0 "$(cat "$run/$name.pid")" 2>/dev/null; then
			die "$name exited; the end of $run/$name.log:
$(tail -5 "$run/$name.log")"
		fi
		sleep 0.1
	done
	die "$name not answering $url after ${secs}s; see $run/$name.log"
}

port_busy() { ss -Hltnu "( sport = :$1 )" 2>/dev/null | grep -q .; }

# start NAME CMD...: runs CMD in the background, logging to RUN_DIR/NAME.log;
# records its pid and the executable it must be running, for stop.
start() {
	local name=$1
	shift
	readlink -f "$(command -v "$1")" >"$run/$name.exe"
	nohup "$@" >"$run/$name.log" 2>&1 </dev/null &
	echo $! >"$run/$name.pid"
}

# stop NAME: stops the process recorded in NAME.pid, if it is still the one
# started (same executable), with SIGTERM then, after 20 s, SIGKILL.
stop() {
	local name=$1 pidf="$run/$1.pid" pid i
	[ -f "$pidf" ] || return 0
	pid=$(cat "$pidf")
	if kill -0 "$pid" 2>/dev/null && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(cat "$run/$name.exe" 2>/dev/null)" ]; then
		kill -TERM "$pid"
		for ((i = 0; i < 200; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$name ($pid) still running after 20s; SIGKILL"
			kill -KILL "$pid"
		fi
		log "stopped $name ($pid)"
	fi
	rm -f "$pidf" "$run/$name.exe"
}

up() {
	[ -x "$inferd_bin" ] || die "$inferd_bin missing: run make build"
	[ -x "$consul_bin" ] || die "$consul_bin missing: run make setup (scripts/build-tools.sh)"
	[ -x "$prom_bin" ] || die "$prom_bin missing: run make setup (scripts/build-tools.sh)"
	command -v haproxy >/dev/null || die "haproxy missing: run make setup"
	mkdir -p "$run"
	if ls "$run"/*.pid >/dev/null 2>&1; then
		die "a cluster is already up from $run (make cluster-down first)"
	fi
	local p i
	for p in $consul_http $consul_dns $serf_lan $serf_wan $consul_rpc $hap_port $hap_stats $prom_port; do
		port_busy "$p" && die "port $p is taken: set PORT_BASE to another base"
	done
	for ((i = 0; i < replicas; i++)); do
		port_busy $((replica_base + i)) && die "port $((replica_base + i)) is taken: set PORT_BASE"
	done

	local t0=$SECONDS
	# A failure half way stops what was started; success clears this.
	trap 'log "up failed: stopping what it started"; down' EXIT
	start consul "$consul_bin" agent -dev -config-file "$root/configs/consul-dev.hcl" \
		-http-port "$consul_http" -dns-port "$consul_dns" -serf-lan-port "$serf_lan" \
		-serf-wan-port "$serf_wan" -server-port "$consul_rpc" -grpc-port -1 -grpc-tls-port -1
	wait_http "http://127.0.0.1:$consul_http/v1/status/leader" 30 consul

	local path device
	case "$model" in
	tiny) path=builtin:tiny device=cpu ;;
	resnet50) path=builtin:resnet50 device=auto ;;
	*) die "MODEL=$model: want tiny or resnet50" ;;
	esac
	for ((i = 1; i <= replicas; i++)); do
		cat >"$run/replica-$i.yaml" <<EOF
listen: "127.0.0.1:$((replica_base + i - 1))"
server: {drain_delay: 2s, replica_name: replica-$i}
models:
  - {name: $model, path: "$path", device: $device}
register:
  enabled: true
  consul_addr: "127.0.0.1:$consul_http"
  tags: [$model]
  sync_interval: 2s
EOF
		start "replica-$i" "$inferd_bin" -config "$run/replica-$i.yaml"
	done

	HAPROXY_PORT=$hap_port HAPROXY_STATS_PORT=$hap_stats CONSUL_DNS_PORT=$consul_dns HAPROXY_RUN_DIR=$run \
		start haproxy haproxy -db -f "$root/configs/haproxy.cfg"
	sed -e "s/127.0.0.1:8500/127.0.0.1:$consul_http/" -e "s/127.0.0.1:8404/127.0.0.1:$hap_stats/" \
		"$root/configs/prometheus.yml" >"$run/prometheus.yml"
	start prometheus "$prom_bin" --config.file="$run/prometheus.yml" --storage.tsdb.path="$run/tsdb" \
		--web.listen-address="127.0.0.1:$prom_port" --log.level=warn

	for ((i = 1; i <= replicas; i++)); do
		wait_http "http://127.0.0.1:$((replica_base + i - 1))/v2/health/ready" 600 "replica-$i"
	done
	wait_http "http://127.0.0.1:$hap_stats/stats" 10 haproxy
	wait_http "http://127.0.0.1:$prom_port/-/ready" 30 prometheus
	# Until HAProxy has found every replica through Consul DNS.
	local seen
	for ((i = 0; i < 100; i++)); do
		seen=$(for _ in $(seq $((replicas * 3))); do
			curl -fsS -D - -o /dev/null --max-time 2 "http://127.0.0.1:$hap_port/v2/health/ready" 2>/dev/null |
				tr -d '\r' | awk -F': ' 'tolower($1)=="x-inferd-replica"{print $2}'
		done | sort -u | wc -l) || true
		[ "$seen" -ge "$replicas" ] && break
		sleep 0.2
	done
	trap - EXIT
	log "up in $((SECONDS - t0))s: $replicas replicas of $model, HAProxy reaches $seen of them"
	cat <<EOF
inferd (HAProxy)      http://127.0.0.1:$hap_port   e.g. curl --data-binary @cat.jpg http://127.0.0.1:$hap_port/v2/models/$model/classify
HAProxy stats         http://127.0.0.1:$hap_stats/stats   (Prometheus exporter: /metrics; Runtime API: $run/haproxy.sock)
Consul UI and API     http://127.0.0.1:$consul_http/ui   (DNS on 127.0.0.1:$consul_dns)
Prometheus API        http://127.0.0.1:$prom_port/api/v1/query?query=up
replicas              $(for ((i = 0; i < replicas; i++)); do printf 'http://127.0.0.1:%d ' $((replica_base + i)); done)
Grafana dashboard     configs/grafana/inferd-dashboard.json (import; datasource: the Prometheus above)
logs and pid files    $run
stop it with          make cluster-down
EOF
}

down() {
	local i
	for ((i = 1; i <= 64; i++)); do
		[ -f "$run/replica-$i.pid" ] && stop "replica-$i"
	done
	stop haproxy
	stop prometheus
	stop consul
	return 0
}

status() {
	local f name
	for f in "$run"/*.pid; do
		[ -e "$f" ] || {
			echo "no cluster in $run"
			return
		}
		name=$(basename "$f" .pid)
		if kill -0 "$(cat "$f")" 2>/dev/null; then echo "$name: running ($(cat "$f"))"; else echo "$name: exited"; fi
	done
}

demo() {
	[ -d "$root/cmd/loadtest" ] || die "cmd/loadtest is missing: the demo's load test needs it"
	up
	trap down EXIT
	log "load test: ${RATE:-50} req/s for ${DURATION:-15s} through HAProxy"
	(cd "$root" && go run ./cmd/loadtest attack -url "http://127.0.0.1:$hap_port" -model "$model" \
		-endpoint classify -rate "${RATE:-50}" -duration "${DURATION:-15s}")
}

case "${1:-}" in
up) up ;;
down) down ;;
demo) demo ;;
status) status ;;
*) die "usage: $0 up|down|demo|status" ;;
esac
