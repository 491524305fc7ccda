# Consul dev agent for the local inferd cluster (scripts/cluster.sh and the
# cluster tests). In-memory, single server, loopback only. Ports are given
# on the command line so that they can be chosen at run time:
#
#   consul agent -dev -config-file configs/consul-dev.hcl \
#     -http-port 18500 -dns-port 18600 -serf-lan-port 18301 \
#     -serf-wan-port 18302 -server-port 18300 -grpc-port -1
node_name      = "inferd-dev"
datacenter     = "dc1"
bind_addr      = "127.0.0.1"
client_addr    = "127.0.0.1"
advertise_addr = "127.0.0.1"
log_level      = "WARN"
ui_config {
  enabled = true
}

dns_config {
  # Only replicas whose readiness check passes are handed to HAProxy.
  only_passing = true
  # HAProxy asks with EDNS (accepted_payload_size): answer every replica in
  # one UDP response rather than truncating at 3 records.
  enable_truncate = true
  udp_answer_limit = 64
  # No caching: a drained or dead replica leaves DNS at once.
  service_ttl {
    "*" = "0s"
  }
  node_ttl = "0s"
}

# Faster reaping of crashed replicas' critical services in development
# (DeregisterCriticalServiceAfter is still at least 1m).
check_update_interval = "0s"
