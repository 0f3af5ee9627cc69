#!/usr/bin/env bash
# LeaderWorkerSet leader: starts the coordinator with --workers derived from the LWS environment.
# LWS_LEADER_ADDRESS is "<lws>-<group>.<subdomain...>"; worker i of the group is "<lws>-<group>-<i>.<subdomain...>".
#   launch/k8s-leader.sh [coordinator flags...]
set -euo pipefail
: "${LWS_LEADER_ADDRESS:?not set: run under a LeaderWorkerSet}" "${LWS_GROUP_SIZE:?not set}"
port="${WORKER_PORT:-50052}"
leader_host="${LWS_LEADER_ADDRESS%%.*}"
domain="${LWS_LEADER_ADDRESS#*.}"
workers=""
for i in $(seq 1 $((LWS_GROUP_SIZE - 1))); do
  workers="${workers:+$workers,}${leader_host}-${i}.${domain}:${port}"
done
[ -n "$workers" ] || { echo "k8s-leader.sh: LWS_GROUP_SIZE must be at least 2" >&2; exit 1; }
bin="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/bin"
exec "$bin/layerskip-coordinator" --workers "$workers" "$@"
