package brokertest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RedisCluster is a Redis Cluster of one test's own: redis-server
// instances with cluster-enabled yes on 127.0.0.1, on free ports (and
// their bus ports, port+10000), data in a temporary directory, joined with
// redis-cli --cluster create. It is torn down when the test ends. A test
// may kill a master (its replica is promoted after cluster-node-timeout,
// 1 s here) and reshard slots.
type RedisCluster struct {
	t     testing.TB
	dir   string
	Ports []int // masters first, then replicas, as created
	cmds  map[int]*exec.Cmd
}

// StartRedisCluster starts masters masters with replicas replicas each. A
// missing redis-server or redis-cli skips the test (fails it with
// KOMBU_REQUIRE_BROKERS=1).
func StartRedisCluster(t testing.TB, masters, replicas int) *RedisCluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			Unavailable(t, bin+" not on PATH")
		}
	}
	n := masters * (1 + replicas)
	c := &RedisCluster{t: t, dir: t.TempDir(), cmds: map[int]*exec.Cmd{}}
	t.Cleanup(c.stopAll)
	// A port found free can be taken before redis-server binds it (by
	// another process's server or an outgoing connection): then the whole
	// set is started again on other ports.
	for attempt := 1; ; attempt++ {
		c.Ports = freeClusterPorts(t, n)
		var err error
		for _, p := range c.Ports {
			if err = c.start(p); err != nil {
				break
			}
		}
		if err == nil {
			break
		}
		c.stopAll()
		if attempt == 3 {
			t.Fatal(err)
		}
	}
	args := []string{"--cluster", "create"}
	for _, p := range c.Ports {
		args = append(args, fmt.Sprintf("127.0.0.1:%d", p))
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK()
	return c
}

// freeClusterPorts picks n ports whose cluster bus ports are free too.
func freeClusterPorts(t testing.TB, n int) []int {
	t.Helper()
	for range 100 {
		base := 10000 + rand.IntN(12000) // bus ports (+10000) stay below Linux's ephemeral range, 32768 and up
		ok := true
		for p := base; p < base+n && ok; p++ {
			for _, q := range []int{p, p + 10000} {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			ports := make([]int, n)
			for i := range ports {
				ports[i] = base + i
			}
			return ports
		}
	}
	t.Fatal("no free range of ports for a Redis Cluster")
	return nil
}

func (c *RedisCluster) start(port int) error {
	dir := filepath.Join(c.dir, strconv.Itoa(port))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0", "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	c.cmds[port] = cmd
	if err := accepting(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// Addrs are the nodes' host:port.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Ports))
	for i, p := range c.Ports {
		out[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	return out
}

// URL is a redis+cluster:// URL naming every node, with query (may be "").
func (c *RedisCluster) URL(query string) string {
	u := "redis+cluster://" + strings.Join(c.Addrs(), ",") + "/"
	if query != "" {
		u += "?" + query
	}
	return u
}

// CLI runs redis-cli against the node on port and returns its output.
func (c *RedisCluster) CLI(port int, args ...string) (string, error) {
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(port)}, args...)...).CombinedOutput()
	return string(out), err
}

// WaitOK waits until every running node reports cluster_state:ok and
// redis-cli --cluster check finds all slots covered and agreed on.
func (c *RedisCluster) WaitOK() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		var last string
		for p := range c.cmds {
			out, err := c.CLI(p, "cluster", "info")
			if err != nil || !strings.Contains(out, "cluster_state:ok") {
				ok, last = false, out
				break
			}
		}
		if ok {
			// A replica that has not synced yet could not take over.
			for p := range c.cmds {
				out, err := c.CLI(p, "info", "replication")
				if err != nil || strings.Contains(out, "role:slave") && !strings.Contains(out, "master_link_status:up") {
					ok, last = false, out
					break
				}
			}
		}
		if ok {
			for p := range c.cmds {
				out, err := c.CLI(p, "--cluster", "check", fmt.Sprintf("127.0.0.1:%d", p))
				if err != nil || !strings.Contains(out, "[OK] All 16384 slots covered") || strings.Contains(out, "[ERR]") {
					ok, last = false, out
				}
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("Redis Cluster not ok within 30 s:\n%s", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// MasterOf returns the port of the master that owns key's slot.
func (c *RedisCluster) MasterOf(key string) int {
	c.t.Helper()
	p, ok := c.LiveMasterOf(key)
	if !ok {
		c.t.Fatalf("no live master owns the slot of %q", key)
	}
	return p
}

// LiveMasterOf returns the port of the master that owns key's slot, as a
// running node sees it, unless that master is marked failed.
func (c *RedisCluster) LiveMasterOf(key string) (int, bool) {
	for p := range c.cmds {
		slot, err := c.CLI(p, "cluster", "keyslot", key)
		if err != nil {
			continue
		}
		// CLUSTER NODES: "<id> <ip:port@bus> <flags> <master> ... <slots...>"
		nodes, err := c.CLI(p, "cluster", "nodes")
		if err != nil {
			continue
		}
		s, _ := strconv.Atoi(strings.TrimSpace(slot))
		for _, line := range strings.Split(nodes, "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, found := strings.Cut(r, "-")
				if !found {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && a <= s && s <= b {
					addr, _, _ := strings.Cut(f[1], "@")
					_, port, _ := net.SplitHostPort(addr)
					n, _ := strconv.Atoi(port)
					return n, true
				}
			}
		}
		return 0, false
	}
	return 0, false
}

// NodeID returns the cluster node ID of the node on port.
func (c *RedisCluster) NodeID(port int) string {
	c.t.Helper()
	out, err := c.CLI(port, "cluster", "myid")
	if err != nil {
		c.t.Fatalf("cluster myid: %v %s", err, out)
	}
	return strings.TrimSpace(out)
}

// Reshard moves slots slots from the master on port from to the master on
// port to, with redis-cli --cluster reshard (MIGRATE, key by key, while
// clients go on: they meet ASK and then MOVED).
func (c *RedisCluster) Reshard(from, to, slots int) {
	c.t.Helper()
	out, err := c.CLI(from, "--cluster", "reshard", fmt.Sprintf("127.0.0.1:%d", from),
		"--cluster-from", c.NodeID(from), "--cluster-to", c.NodeID(to),
		"--cluster-slots", strconv.Itoa(slots), "--cluster-yes", "--cluster-pipeline", "10")
	if err != nil {
		c.t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, out)
	}
}

// Kill kills the node on port (SIGKILL), as a crash would.
func (c *RedisCluster) Kill(port int) {
	cmd := c.cmds[port]
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	delete(c.cmds, port)
}

func (c *RedisCluster) stopAll() {
	for p, cmd := range c.cmds {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		kill := time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Kill() })
		_ = cmd.Wait()
		kill.Stop()
		delete(c.cmds, p)
	}
}
