#!/usr/bin/env bash
# A local inferd cluster on loopback: a Consul dev agent, REPLICAS inferd
# replicas that register themselves, HAProxy balancing over Consul DNS and
# serving as the API gateway (TLS, API keys, per-tenant models and rates),
# and Prometheus discovering the replicas through Consul.
#
#   scripts/cluster.sh up      start it (make cluster), print the URLs
#   scripts/cluster.sh down    stop exactly what `up` started (make cluster-down)
#   scripts/cluster.sh demo    up, a 15 s load test through HAProxy, down (make demo)
#   scripts/cluster.sh status  what is running
#   scripts/cluster.sh certs DIR   a private CA and a server certificate in DIR
#                              (what `up` makes in RUN_DIR/gateway/tls)
#
# Environment:
#   MODEL=tiny|resnet50   the model every replica serves (default tiny)
#   REPLICAS=3            number of replicas
#   PORT_BASE=18500       ports used, all on 127.0.0.1: Consul HTTP BASE,
#                         DNS BASE+1, serf BASE+2/+3, RPC BASE+4; HAProxy
#                         BASE+10 (plain HTTP), its stats and exporter
#                         BASE+11, TLS BASE+12, gRPC BASE+13; Prometheus
#                         BASE+20; replicas BASE+30... (HTTP) and
#                         BASE+60... (gRPC), so at most 30 replicas
#   RUN_DIR=.run/cluster  pid files, logs, rendered configs, and the
#                         gateway's state in RUN_DIR/gateway: its maps (API
#                         key hashes, tenants' models and rates) and tls/
#                         (the CA, ca.pem, and the server's server.pem); kept
#                         by `down`, reused by the next `up`
#   GATEWAY=on|off        off: no API keys, model fences nor rate limits
#                         (default on; the demo runs with off)
#   PLAIN=1|0             0: no plain HTTP front end, TLS only (default 1)
#   TLS_BIND=127.0.0.1:BASE+12   the TLS front end's address
#   TLS_NAMES=            more DNS names or IPs for the server certificate,
#                         comma-separated (it always has localhost,
#                         127.0.0.1 and ::1)
#   RATE=50 DURATION=15s  the demo's load
# Programs: bin/inferd and bin/inferd-keys (make build), haproxy and openssl
# (PATH), and Consul and Prometheus from $INFERD_CACHE/bin
# (scripts/build-tools.sh, run by make setup).
set -Eeuo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="${INFERD_CACHE:-$HOME/.cache/inferd}"
run="${RUN_DIR:-$root/.run/cluster}"
model="${MODEL:-tiny}"
replicas="${REPLICAS:-3}"
base="${PORT_BASE:-18500}"

consul_http=$base consul_dns=$((base + 1)) serf_lan=$((base + 2)) serf_wan=$((base + 3)) consul_rpc=$((base + 4))
hap_port=$((base + 10)) hap_stats=$((base + 11)) hap_tls=$((base + 12)) hap_grpc=$((base + 13)) prom_port=$((base + 20))
replica_base=$((base + 30)) replica_grpc_base=$((base + 60))
gateway="${GATEWAY:-on}"
plain="${PLAIN:-1}"
tls_bind="${TLS_BIND:-127.0.0.1:$hap_tls}"
gwdir="$run/gateway"

consul_bin="${INFERD_CONSUL:-$cache/bin/consul-1.14.11}"
prom_bin="${INFERD_PROMETHEUS:-$cache/bin/prometheus-2.55.1}"
inferd_bin="${INFERD_BIN:-$root/bin/inferd}"
keys_bin="${INFERD_KEYS_BIN:-$root/bin/inferd-keys}"

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

# certs DIR: a private CA (DIR/ca.pem, its key DIR/ca.key) and a server
# certificate it signs, with its key, in one PEM file for HAProxy
# (DIR/server.pem), for localhost, 127.0.0.1, ::1 and $TLS_NAMES. Both
# ECDSA P-256. An existing CA is kept (clients trust it) unless it expires
# within a day; the server certificate is made again when it expires within
# 30 days, the CA changed or the names did.
certs() {
	local dir=$1 names san n
	command -v openssl >/dev/null || die "openssl missing: apt-get install openssl"
	mkdir -p "$dir"
	chmod 700 "$dir"
	names="localhost,127.0.0.1,::1${TLS_NAMES:+,$TLS_NAMES}"
	san=$(tr ',' '\n' <<<"$names" | while read -r n; do
		[ -n "$n" ] || continue
		if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then printf 'IP:%s,' "$n"; else printf 'DNS:%s,' "$n"; fi
	done)
	san=${san%,}
	if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca.key" ] || ! openssl x509 -checkend 86400 -noout -in "$dir/ca.pem" >/dev/null; then
		(umask 077 && openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
			-keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 -subj "/CN=inferd local CA $(date -u +%Y-%m-%d)" \
			-addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null) ||
			die "openssl could not make the CA in $dir"
		chmod 644 "$dir/ca.pem"
		rm -f "$dir/server.pem"
		log "made a private CA: $dir/ca.pem"
	fi
	if [ -s "$dir/server.pem" ] && [ "$(cat "$dir/server.names" 2>/dev/null)" = "$san" ] &&
		openssl x509 -checkend 2592000 -noout -in "$dir/server.pem" >/dev/null &&
		openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null 2>&1; then
		return 0
	fi
	local tmp
	tmp=$(mktemp -d "$dir/.new.XXXXXX")
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san" >"$tmp/ext"
	if ! (umask 077 && openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$tmp/key" -out "$tmp/csr" -subj "/CN=localhost" 2>/dev/null &&
		openssl x509 -req -in "$tmp/csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
			-days 397 -sha256 -extfile "$tmp/ext" -out "$tmp/crt" 2>/dev/null &&
		cat "$tmp/crt" "$tmp/key" >"$tmp/pem"); then
		rm -rf "$tmp"
		die "openssl could not make the server certificate in $dir"
	fi
	mv "$tmp/pem" "$dir/server.pem"
	printf '%s\n' "$san" >"$dir/server.names"
	rm -rf "$tmp"
	log "made a server certificate for $san: $dir/server.pem"
}

# gateway_init: the gateway's maps (from configs/gateway's empty ones) and
# certificates in RUN_DIR/gateway, kept from one `up` to the next.
gateway_init() {
	local f
	mkdir -p "$gwdir"
	chmod 700 "$gwdir"
	for f in "$root"/configs/gateway/*.map; do
		[ -e "$gwdir/$(basename "$f")" ] || install -m 600 "$f" "$gwdir/"
	done
	certs "$gwdir/tls"
}

up() {
	[ -x "$inferd_bin" ] || die "$inferd_bin missing: run make build"
	[ -x "$consul_bin" ] || die "$consul_bin missing: run make setup (scripts/build-tools.sh)"
	[ -x "$prom_bin" ] || die "$prom_bin missing: run make setup (scripts/build-tools.sh)"
	command -v haproxy >/dev/null || die "haproxy missing: run make setup"
	[ "$gateway" = on ] || [ "$gateway" = off ] || die "GATEWAY=$gateway: want on or off"
	[ "$plain" = 1 ] || [ "$plain" = 0 ] || die "PLAIN=$plain: want 1 or 0"
	[ "$gateway" = off ] || [ -x "$keys_bin" ] || die "$keys_bin missing: run make build"
	((replicas >= 1 && replicas <= 30)) || die "REPLICAS=$replicas: want 1 to 30"
	mkdir -p "$run"
	if ls "$run"/*.pid >/dev/null 2>&1; then
		die "a cluster is already up from $run (make cluster-down first)"
	fi
	local p i
	for p in $consul_http $consul_dns $serf_lan $serf_wan $consul_rpc $hap_port $hap_stats ${tls_bind##*:} $hap_grpc $prom_port; do
		port_busy "$p" && die "port $p is taken: set PORT_BASE to another base"
	done
	for ((i = 0; i < replicas; i++)); do
		port_busy $((replica_base + i)) && die "port $((replica_base + i)) is taken: set PORT_BASE"
		port_busy $((replica_grpc_base + i)) && die "port $((replica_grpc_base + i)) is taken: set PORT_BASE"
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
grpc_listen: "127.0.0.1:$((replica_grpc_base + i - 1))"
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

	gateway_init
	local hap_env=(HAPROXY_STATS_PORT="$hap_stats" CONSUL_DNS_PORT="$consul_dns" HAPROXY_RUN_DIR="$run"
		HAPROXY_GATEWAY="$gateway" HAPROXY_GATEWAY_DIR="$gwdir"
		HAPROXY_TLS_BIND="$tls_bind" HAPROXY_TLS_CERT="$gwdir/tls/server.pem" HAPROXY_GRPC_PORT="$hap_grpc")
	[ "$plain" = 1 ] && hap_env+=(HAPROXY_PORT="$hap_port")
	(
		unset HAPROXY_PORT
		export "${hap_env[@]}"
		haproxy -c -q -f "$root/configs/haproxy.cfg" || die "configs/haproxy.cfg does not pass haproxy -c with these settings"
		# -dMglobal: keep freed 1 MiB buffers in HAProxy's pools (see
		# tune.bufsize in configs/haproxy.cfg).
		start haproxy haproxy -dMglobal -db -f "$root/configs/haproxy.cfg"
	)
	sed -e "s/127.0.0.1:8500/127.0.0.1:$consul_http/" -e "s/127.0.0.1:8404/127.0.0.1:$hap_stats/" \
		"$root/configs/prometheus.yml" >"$run/prometheus.yml"
	start prometheus "$prom_bin" --config.file="$run/prometheus.yml" --storage.tsdb.path="$run/tsdb" \
		--web.listen-address="127.0.0.1:$prom_port" --log.level=warn

	for ((i = 1; i <= replicas; i++)); do
		wait_http "http://127.0.0.1:$((replica_base + i - 1))/v2/health/ready" 600 "replica-$i"
	done
	wait_http "http://127.0.0.1:$hap_stats/stats" 10 haproxy
	wait_http "http://127.0.0.1:$prom_port/-/ready" 30 prometheus
	# Until HAProxy has found every replica through Consul DNS (health
	# checks need no key).
	local tls_url="https://127.0.0.1:${tls_bind##*:}" ca="$gwdir/tls/ca.pem" seen
	for ((i = 0; i < 100; i++)); do
		seen=$(for _ in $(seq $((replicas * 3))); do
			curl -fsS --cacert "$ca" -D - -o /dev/null --max-time 2 "$tls_url/v2/health/ready" 2>/dev/null |
				tr -d '\r' | awk -F': ' 'tolower($1)=="x-inferd-replica"{print $2}'
		done | sort -u | wc -l) || true
		[ "$seen" -ge "$replicas" ] && break
		sleep 0.2
	done
	# A first key, on the first `up`: shown once, stored as its hash.
	local key="" keyline
	if [ "$gateway" = on ] && ! grep -q '^[0-9a-f]' "$gwdir/keys.map"; then
		key=$("$keys_bin" -dir "$gwdir" -socket "$run/haproxy.sock" add demo -models '*' -rate 100 2>/dev/null) ||
			die "$keys_bin could not add the first key"
	fi
	trap - EXIT
	log "up in $((SECONDS - t0))s: $replicas replicas of $model, HAProxy reaches $seen of them"
	local plain_line="plain HTTP            off (PLAIN=0)" front="gateway, TLS"
	[ "$plain" = 1 ] && plain_line="plain HTTP            http://127.0.0.1:$hap_port   (loopback; same rules as TLS)"
	if [ "$gateway" = off ]; then
		front="HAProxy, TLS"
		keyline="gateway               off (GATEWAY=off): no keys, every model, no rate limits"
	elif [ -n "$key" ]; then
		keyline="first API key         $key
                      tenant demo: every model, 100 requests/s. Shown once: only its hash is kept.
                      more: bin/inferd-keys -dir $gwdir add TENANT -models 'm,prefix*' -rate N"
	else
		keyline="API keys              bin/inferd-keys -dir $gwdir list | add TENANT -models LIST -rate N | revoke ID"
	fi
	cat <<EOF
inferd ($front) $tls_url   CA: $ca
                      e.g. curl --cacert $ca -H "Authorization: Bearer \$KEY" \\
                             --data-binary @cat.jpg $tls_url/v2/models/$model/classify
$plain_line
gRPC (KServe v2)      127.0.0.1:$hap_grpc   (h2c; also on the TLS port; same key as metadata, a key allowed every model)
                      e.g. grpcurl -plaintext -H "authorization: Bearer \$KEY" 127.0.0.1:$hap_grpc inference.GRPCInferenceService/ServerReady
$keyline
HAProxy stats         http://127.0.0.1:$hap_stats/stats   (Prometheus exporter: /metrics; Runtime API: $run/haproxy.sock)
Consul UI and API     http://127.0.0.1:$consul_http/ui   (DNS on 127.0.0.1:$consul_dns)
Prometheus API        http://127.0.0.1:$prom_port/api/v1/query?query=up
replicas              $(for ((i = 0; i < replicas; i++)); do printf 'http://127.0.0.1:%d ' $((replica_base + i)); done)
replicas' gRPC        $(for ((i = 0; i < replicas; i++)); do printf '127.0.0.1:%d ' $((replica_grpc_base + i)); done)
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
	# loadtest sends no API key and does not trust a private CA: the demo
	# runs on the plain front end without the gateway.
	gateway=${GATEWAY:-off} plain=1
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
certs)
	[ $# -eq 2 ] || die "usage: $0 certs DIR"
	certs "$2"
	;;
*) die "usage: $0 up|down|demo|status|certs DIR" ;;
esac
