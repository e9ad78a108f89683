#!/usr/bin/env bash
# Starts or stops a local Redis Cluster for trying kombu-go's redis+cluster://
# transport: $MASTERS masters (default 3) with $REPLICAS replicas each
# (default 1) on 127.0.0.1, ports from $PORT (default 7100-7105; cluster bus
# ports +10000), data in $DIR (default .tmp/redis-cluster). Needs
# redis-server and redis-cli (Redis 6 or later).
#
#   scripts/redis-cluster.sh up     start it (does nothing if it is up)
#   scripts/redis-cluster.sh down   stop it and remove its data
#   scripts/redis-cluster.sh url    print the broker URL
set -euo pipefail
PORT=${PORT:-7100}
DIR=${DIR:-$(cd "$(dirname "$0")/.." && pwd)/.tmp/redis-cluster}
MASTERS=${MASTERS:-3}
REPLICAS=${REPLICAS:-1}
N=$((MASTERS * (1 + REPLICAS)))
ports() { seq "$PORT" $((PORT + N - 1)); }
url() {
	local hosts
	hosts=$(ports | sed 's/^/127.0.0.1:/' | paste -sd, -)
	echo "redis+cluster://$hosts/?cluster_mode=kombu&global_keyprefix={kombu}:"
}
case "${1:-}" in
up)
	if redis-cli -p "$PORT" cluster info 2>/dev/null | grep -q cluster_state:ok; then
		echo "already up: $(url)"; exit 0
	fi
	mkdir -p "$DIR"
	for p in $(ports); do
		mkdir -p "$DIR/$p"
		redis-server --port "$p" --bind 127.0.0.1 --dir "$DIR/$p" --logfile "$DIR/$p/redis.log" \
			--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 --repl-diskless-sync-delay 0 \
			--save "" --appendonly yes --daemonize yes --pidfile "$DIR/$p/redis.pid"
	done
	for p in $(ports); do
		for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
	done
	if ! redis-cli -p "$PORT" cluster info | grep -q "cluster_slots_assigned:16384"; then
		if [ "$MASTERS" -eq 1 ]; then
			# redis-cli --cluster create wants 3 masters at least.
			redis-cli -p "$PORT" cluster addslotsrange 0 16383 >/dev/null
		else
			# shellcheck disable=SC2046
			redis-cli --cluster create $(ports | sed 's/^/127.0.0.1:/') --cluster-replicas "$REPLICAS" --cluster-yes >/dev/null
		fi
	fi
	for _ in $(seq 300); do
		redis-cli -p "$PORT" cluster info | grep -q cluster_state:ok && { echo "up: $(url)"; exit 0; }
		sleep 0.1
	done
	echo "cluster did not become ok" >&2; exit 1
	;;
down)
	for p in $(ports); do
		if [ -f "$DIR/$p/redis.pid" ]; then
			kill "$(cat "$DIR/$p/redis.pid")" 2>/dev/null || true
		fi
	done
	for p in $(ports); do
		for _ in $(seq 100); do [ -f "$DIR/$p/redis.pid" ] && kill -0 "$(cat "$DIR/$p/redis.pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
	done
	rm -rf "$DIR"
	echo down
	;;
url) url ;;
*) echo "usage: $0 up|down|url" >&2; exit 2 ;;
esac
