// Package cluster holds the integration tests of a local inferd cluster:
// a Consul dev agent, three inferd replicas that register themselves,
// HAProxy balancing over Consul DNS, and Prometheus discovering the replicas
// through Consul. The tests start the real programs as processes on
// loopback ports chosen at run time (scripts/cluster.sh starts the same
// cluster by hand), and check the shipped configs (configs/haproxy.cfg,
// configs/consul-dev.hcl, configs/prometheus.yml, the Grafana dashboard)
// and Dockerfile.cuda.
//
// They are skipped under -short, and with a reason when a program is
// missing: `make setup` builds Consul and Prometheus (Debian's prometheus
// lacks consul_sd_configs) into $INFERD_CACHE/bin and installs HAProxy.
package cluster
