// Package cluster holds the integration tests of a local inferd cluster:
// a Consul dev agent, three inferd replicas that register themselves,
// HAProxy balancing over Consul DNS, and Prometheus discovering the replicas
// through Consul. The tests start the real programs as processes on
// loopback ports chosen at run time (scripts/cluster.sh starts the same
// cluster by hand), and check the shipped configs (configs/haproxy.cfg,
// configs/consul-dev.hcl, configs/prometheus.yml, the Grafana dashboard)
// and Dockerfile.cuda. TestGateway runs the API gateway in HAProxy (TLS,
// keys, model fences, rate limits; cmd/inferd-keys) against real clients;
// TestGatewayFigures measures its cost when $INFERD_GATEWAY_FIGURES is set.
// TestClusterGRPC sends KServe gRPC calls through HAProxy's gRPC front end
// to replicas registered as inferd-grpc, through a drain and a kill -9.
//
// They are skipped under -short, and with a reason when a program is
// missing: `make setup` builds Consul and Prometheus (Debian's prometheus
// lacks consul_sd_configs) into $INFERD_CACHE/bin and installs HAProxy;
// the gateway tests also need openssl on PATH.
package cluster
