#!/usr/bin/env bash
# rabbitmq-cluster.sh up|down|status|stop-node N|start-node N
#
# A three-node RabbitMQ cluster on this host, for the cluster tests
# (transports/amqp's conformance run, chaos/'s fault tests) and for trying
# kombu-go on a cluster (make cluster-up). The nodes are kc1@localhost,
# kc2@localhost and kc3@localhost, listening for AMQP on 127.0.0.1:5681-5683
# with distribution ports 25681-25683. Each has its own config, data and log
# directories under $KOMBU_RABBIT_CLUSTER_DIR (default /tmp/kombu-rabbit-cluster),
# owned by the rabbitmq user, and no plugins (no management listener), so a
# RabbitMQ already running on this host (rabbit@localhost on 5672) is left
# alone: the nodes share only its Erlang cookie, which lets rabbitmqctl reach
# them (rabbitmqctl -n kc1@localhost ...).
#
# After `up`, the cluster's URL list for kombu.Dial is
#   amqp://guest:guest@127.0.0.1:5681//;amqp://guest:guest@127.0.0.1:5682//;amqp://guest:guest@127.0.0.1:5683//
# which the tests read from KOMBU_RABBIT_CLUSTER (`scripts/rabbitmq-cluster.sh urls`
# prints it). guest may log in from 127.0.0.1 only, as on any RabbitMQ.
set -euo pipefail

DIR=${KOMBU_RABBIT_CLUSTER_DIR:-/tmp/kombu-rabbit-cluster}
NODES=(1 2 3)
RMQ_BIN=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
COOKIE_HOME=/var/lib/rabbitmq # where the rabbitmq user's .erlang.cookie lives

name() { echo "kc$1@localhost"; }
port() { echo $((5680 + $1)); }

# as_rabbitmq runs a command as the rabbitmq user (the data directories and
# the cookie are its), with node N's environment.
as_rabbitmq() {
	local n=$1
	shift
	local env=(
		HOME="$COOKIE_HOME"
		PATH="$RMQ_BIN:/usr/bin:/bin:/usr/sbin:/sbin"
		RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
		RABBITMQ_NODENAME="$(name "$n")"
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
		RABBITMQ_NODE_PORT="$(port "$n")"
		RABBITMQ_DIST_PORT=$((20000 + $(port "$n")))
		RABBITMQ_CONFIG_FILE="$DIR/kc$n/rabbitmq.conf"
		RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/kc$n/advanced.config"
		RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
		RABBITMQ_MNESIA_BASE="$DIR/kc$n/mnesia"
		RABBITMQ_MNESIA_DIR="$DIR/kc$n/mnesia/$(name "$n")"
		RABBITMQ_LOG_BASE="$DIR/kc$n/log"
		RABBITMQ_PID_FILE="$DIR/kc$n/pid"
		ERL_EPMD_ADDRESS=127.0.0.1
	)
	if [ "$(id -u)" = "$(id -u rabbitmq)" ]; then
		env "${env[@]}" "$@"
	else
		runuser -u rabbitmq -- env "${env[@]}" "$@"
	fi
}

ctl() { local n=$1; shift; as_rabbitmq "$n" "$RMQ_BIN/rabbitmqctl" -n "$(name "$n")" "$@"; }

prepare() {
	mkdir -p "$DIR"
	# An empty env file, so the host's /etc/rabbitmq/rabbitmq-env.conf
	# (which names the host's own node) is not read.
	: >"$DIR/rabbitmq-env.conf"
	echo "[]." >"$DIR/enabled_plugins"
	for n in "${NODES[@]}"; do
		mkdir -p "$DIR/kc$n/mnesia" "$DIR/kc$n/log"
		cat >"$DIR/kc$n/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$(port "$n")
loopback_users.guest = true
# The fault tests stop nodes: a node that comes back must rejoin without
# waiting for the others (they are up or being started by the same script).
cluster_partition_handling = pause_minority
log.console = false
log.file.level = warning
CONF
		echo "[]." >"$DIR/kc$n/advanced.config"
	done
	chown -R rabbitmq:rabbitmq "$DIR"
}

start_node() {
	local n=$1
	if ctl "$n" -q ping >/dev/null 2>&1; then return 0; fi
	as_rabbitmq "$n" "$RMQ_BIN/rabbitmq-server" -detached >/dev/null 2>&1
}

# wait_node waits for node N to register (await_startup fails at once on a
# node that is not running yet: -detached returns before the VM is up), then
# for RabbitMQ to have started on it.
wait_node() {
	for _ in $(seq 1 60); do
		ctl "$1" -q ping >/dev/null 2>&1 && break
		sleep 1
	done
	ctl "$1" -q --timeout 120 await_startup
}

up() {
	if ctl 1 -q ping >/dev/null 2>&1 && ctl 2 -q ping >/dev/null 2>&1 && ctl 3 -q ping >/dev/null 2>&1; then
		echo "rabbitmq cluster already up"; urls; return 0
	fi
	prepare
	local fresh=1
	[ -d "$DIR/kc2/mnesia/$(name 2)" ] && fresh=0
	for n in "${NODES[@]}"; do start_node "$n"; done
	for n in "${NODES[@]}"; do wait_node "$n"; done
	if [ "$fresh" = 1 ]; then
		for n in 2 3; do
			ctl "$n" -q stop_app
			ctl "$n" -q join_cluster "$(name 1)"
			ctl "$n" -q start_app
		done
	fi
	for n in "${NODES[@]}"; do wait_node "$n"; done
	ctl 1 -q cluster_status --formatter json | grep -q "$(name 3)" || { echo "cluster did not form" >&2; exit 1; }
	echo "rabbitmq cluster up: $(name 1) $(name 2) $(name 3)"
	urls
}

stop_node() { ctl "$1" -q shutdown >/dev/null 2>&1 || true; }

down() {
	for n in "${NODES[@]}"; do stop_node "$n"; done
	rm -rf "$DIR"
	echo "rabbitmq cluster down"
}

urls() {
	local out=()
	for n in "${NODES[@]}"; do out+=("amqp://guest:guest@127.0.0.1:$(port "$n")//"); done
	(IFS=';'; echo "${out[*]}")
}

case ${1:-} in
up) up ;;
down) down ;;
urls) urls ;;
status) ctl 1 cluster_status ;;
stop-node) stop_node "$2" ;;
start-node) start_node "$2"; wait_node "$2" ;;
*) echo "usage: $0 up|down|urls|status|stop-node N|start-node N" >&2; exit 2 ;;
esac
