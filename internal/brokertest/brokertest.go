// Package brokertest gives integration tests the URL of a real broker on this
// machine, or skips them with a one-line reason when the broker is not
// reachable. With KOMBU_REQUIRE_BROKERS=1 (set by CI) an unreachable broker
// fails the test instead, so no broker test can pass by not running.
package brokertest

import (
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// Default URLs, overridden by KOMBU_TEST_AMQP_URL, KOMBU_TEST_REDIS_URL,
// KOMBU_TEST_POSTGRES_URL and KOMBU_TEST_MYSQL_URL.
const (
	DefaultAMQPURL     = "amqp://guest:guest@127.0.0.1:5672//"
	DefaultRedisURL    = "redis://127.0.0.1:6379/15"
	DefaultPostgresURL = "postgresql://postgres@127.0.0.1:5432/test"
	DefaultMySQLURL    = "mysql://root@127.0.0.1:3306/test"
)

// AMQPURL returns the RabbitMQ URL tests use, after checking that the broker
// accepts TCP connections.
func AMQPURL(t testing.TB) string {
	t.Helper()
	return reachable(t, "RabbitMQ", "KOMBU_TEST_AMQP_URL", DefaultAMQPURL, "5672")
}

// RedisURL returns the Redis URL tests use, after checking that the server
// accepts TCP connections.
func RedisURL(t testing.TB) string {
	t.Helper()
	return reachable(t, "Redis", "KOMBU_TEST_REDIS_URL", DefaultRedisURL, "6379")
}

// PostgresURL returns the PostgreSQL URL tests use (a database they may
// create tables in), after checking that the server accepts TCP
// connections.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return reachable(t, "PostgreSQL", "KOMBU_TEST_POSTGRES_URL", DefaultPostgresURL, "5432")
}

// MySQLURL returns the MySQL or MariaDB URL tests use (a database they may
// create tables in), after checking that the server accepts TCP
// connections.
func MySQLURL(t testing.TB) string {
	t.Helper()
	return reachable(t, "MySQL/MariaDB", "KOMBU_TEST_MYSQL_URL", DefaultMySQLURL, "3306")
}

// Required reports whether CI demands every broker test to run.
func Required() bool { return os.Getenv("KOMBU_REQUIRE_BROKERS") == "1" }

// Unavailable skips the test with reason, or fails it when brokers are
// required. Tests use it for other missing prerequisites of a broker test,
// such as Python Kombu for interop tests.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (KOMBU_REQUIRE_BROKERS=1)", reason)
	}
	t.Skip(reason + " (KOMBU_REQUIRE_BROKERS=1 makes this a failure)")
}

func reachable(t testing.TB, name, env, def, defaultPort string) string {
	t.Helper()
	raw := os.Getenv(env)
	if raw == "" {
		raw = def
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s=%q: %v", env, raw, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), defaultPort)
	}
	conn, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		Unavailable(t, name+" not reachable at "+host+": "+err.Error())
		return ""
	}
	conn.Close()
	return raw
}
