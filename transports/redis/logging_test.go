package redis_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transports/redis"
)

func TestGoRedisLoggerWritesThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	l := redis.GoRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	// It is what go-redis's SetLogger takes (checked by the compiler).
	var _ func() = func() { goredis.SetLogger(l) }
	l.Printf(context.Background(), "sentinel: GetMasterAddrByName name=%q failed: %s", "mymaster", "i/o timeout")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log output %q: %v", buf.String(), err)
	}
	if line["level"] != "WARN" || line["component"] != "go-redis" ||
		line["msg"] != `sentinel: GetMasterAddrByName name="mymaster" failed: i/o timeout` {
		t.Errorf("logged %v", line)
	}
	buf.Reset()
	quiet := redis.GoRedisLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})))
	quiet.Printf(context.Background(), "dropped %d", 1)
	if buf.Len() != 0 {
		t.Errorf("a logger above Warn logged %q", buf.String())
	}
}
