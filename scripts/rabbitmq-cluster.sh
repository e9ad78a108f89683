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

# formed reports whether node 1 sees all three nodes running in its cluster.
formed() {
	local status
	status=$(ctl 1 -q cluster_status --formatter json 2>/dev/null) || return 1
	# running_nodes lists the members that are up; the disk_nodes list would
	# also name a member that has left or never started.
	python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if set(s.get("running_nodes", [])) >= set(sys.argv[1:]) else 1)' \
		"$(name 1)" "$(name 2)" "$(name 3)" <<<"$status"
}

# form starts the three nodes from empty directories and joins 2 and 3 to 1.
form() {
	prepare
	for n in "${NODES[@]}"; do start_node "$n"; done
	for n in "${NODES[@]}"; do wait_node "$n"; done
	for n in 2 3; do
		ctl "$n" -q stop_app
		ctl "$n" -q join_cluster "$(name 1)"
		ctl "$n" -q start_app
	done
	for n in "${NODES[@]}"; do wait_node "$n"; done
}

up() {
	if formed; then
		echo "rabbitmq cluster already up"; urls; return 0
	fi
	# A cluster this script formed, stopped since (the fault tests stop all
	# three nodes and call up to bring them back): start its nodes on their
	# data, which the tests count on (a quorum queue's confirmed messages).
	if [ -f "$DIR/formed" ]; then
		for n in "${NODES[@]}"; do start_node "$n"; done
		local ok=1
		for n in "${NODES[@]}"; do wait_node "$n" || ok=0; done
		if [ "$ok" = 1 ] && formed; then
			echo "rabbitmq cluster up again: $(name 1) $(name 2) $(name 3)"
			urls
			return 0
		fi
		echo "the stopped cluster did not come back; forming a new one" >&2
	fi
	# Anything else left over (nodes of a run that was killed, a directory
	# whose nodes never joined) is cleared: a node half-way through a join
	# cannot be trusted to finish it.
	down >/dev/null
	for try in 1 2; do
		if form && formed; then
			touch "$DIR/formed"
			echo "rabbitmq cluster up: $(name 1) $(name 2) $(name 3)"
			urls
			return 0
		fi
		echo "cluster did not form (try $try); node 1 says:" >&2
		ctl 1 cluster_status >&2 || true
		for n in "${NODES[@]}"; do
			tail -n 20 "$DIR/kc$n/log/"*.log >&2 2>/dev/null || true
		done
		down >/dev/null
	done
	exit 1
}

# stop_node asks node N to shut down, for at most a minute.
stop_node() {
	as_rabbitmq "$1" timeout 60 "$RMQ_BIN/rabbitmqctl" -n "$(name "$1")" -q shutdown >/dev/null 2>&1 || true
}

# kill_nodes kills what is left of the nodes' Erlang VMs. Their command
# lines do not name the node (RabbitMQ passes it in the environment), so
# they are found by RABBITMQ_NODENAME there.
kill_nodes() {
	local pid
	for pid in $(pgrep -x beam.smp || true); do
		if tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qx "RABBITMQ_NODENAME=kc[0-9]@localhost"; then
			kill -9 "$pid" 2>/dev/null || true
		fi
	done
}

# down stops the nodes and removes their directories. A node that does not
# answer shutdown (killed half-way, or hung) is killed, so that the next up
# starts from nothing.
down() {
	for n in "${NODES[@]}"; do stop_node "$n"; done
	kill_nodes
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
