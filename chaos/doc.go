// Package chaos is kombu-go's fault-injection suite (reliability.md §6).
//
// It is a separate module so that its test-only dependencies (Toxiproxy,
// goleak) never reach the main go.mod, and it must run alone: several tests
// stop the broker application, raise memory alarms, pause Redis or change
// RabbitMQ settings at runtime, which disturbs every other client of the
// same brokers. Run it with
//
//	make chaos                              # cd chaos && go test -count=1 -timeout 15m ./...
//	KOMBU_CHAOS_FIGURES=1 go test -count=1 -timeout 15m ./...   # also rewrites FIGURES.md
//
// The harness (harness.go) gives every message a unique id, records what the
// producer was told about each id (confirmed, failed, or unknown when the
// outcome could not be known, i.e. the publish hit its context deadline) and
// every delivery a consumer saw, and checks the history the way the RabbitMQ
// Jepsen test's total-queue checker does: lost (confirmed, never consumed),
// duplicated (consumed more than once), unexpected (consumed, never
// published), recovered (not confirmed, consumed all the same), plus the time
// to recover once a fault is removed.
//
// Faults come from an in-process Toxiproxy (proxy.go) between the SDK and
// the broker, from rabbitmqctl and redis-cli, and from SIGKILLing consumer
// processes, which are this test binary re-executed (TestHelperProcess).
//
// The SQL faults (sql_test.go: PostgreSQL restart, killed backends,
// MariaDB restart) run against database servers each test starts for
// itself from the distribution's binaries (internal/brokertest's
// StartPostgres and StartMariaDB), never against the shared ones.
//
// The RabbitMQ cluster faults (rabbitcluster_test.go, tests 17–17c: the
// quorum queue leader's node stopped, a node cut off from the clients by
// Toxiproxy, every node restarted) run against the three-node cluster of
// scripts/rabbitmq-cluster.sh (make cluster-up; KOMBU_TEST_AMQP_CLUSTER_URL),
// whose nodes they stop and start with that script, never the shared broker.
//
// Brokers are found at 127.0.0.1:5672 (RabbitMQ, guest/guest) and
// 127.0.0.1:6379 (Redis), or KOMBU_TEST_AMQP_URL / KOMBU_TEST_REDIS_URL. A
// broker that cannot be reached skips its tests, unless
// KOMBU_REQUIRE_BROKERS=1, which makes that a failure.
package chaos
