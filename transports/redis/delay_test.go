package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/runtime/transport"
	"github.com/kombu-go/kombu/runtime/transport/transporttest"
	kredis "github.com/kombu-go/kombu/transports/redis"
)

// TestDelayLayout: a delayed message waits in the queue's sorted set,
// scored by its due time on the server's clock, with the queue's entry in
// the index; the queue's list, which Kombu reads, is empty until it is due.
func TestDelayLayout(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	q := "work"
	now, err := e.raw.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	err = c.Publish(context.Background(), &transport.Publishing{RoutingKey: q, Body: []byte("later"), Delay: 800 * time.Millisecond,
		Properties: transport.Properties{Priority: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if n := e.raw.LLen(context.Background(), e.prefix+q).Val(); n != 0 {
		t.Fatalf("the queue's list holds %d messages before the delay passed", n)
	}
	set := e.prefix + "_kombu_go.delayed.q:" + q
	members := e.raw.ZRangeWithScores(context.Background(), set, 0, -1).Val()
	if len(members) != 1 {
		t.Fatalf("%s holds %v, want one message", set, members)
	}
	m := members[0]
	due := now.Add(800 * time.Millisecond).UnixMilli()
	if int64(m.Score) < due || int64(m.Score) > due+500 {
		t.Errorf("scored %v, want the server's time plus the delay, about %d", m.Score, due)
	}
	s, _ := m.Member.(string)
	if s[0] != '0' || envelope(t, s[1:])["body"] == nil {
		t.Errorf("member %q: want the priority step, then Kombu's envelope", s)
	}
	if score, err := e.raw.ZScore(context.Background(), e.prefix+"_kombu_go.delayed", "q:"+q).Result(); err != nil || score != m.Score {
		t.Errorf("index entry for q:%s: %v (%v), want %v", q, score, err, m.Score)
	}
	// A delay of days is a score days ahead.
	if err := c.Publish(context.Background(), &transport.Publishing{RoutingKey: "someday", Body: []byte("x"), Delay: 72 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	far := e.raw.ZRangeWithScores(context.Background(), e.prefix+"_kombu_go.delayed.q:someday", 0, -1).Val()
	if want := now.Add(72 * time.Hour).UnixMilli(); len(far) != 1 || int64(far[0].Score) < want || int64(far[0].Score) > want+5000 {
		t.Errorf("a three-day delay: %v, want one message scored about %d", far, want)
	}
	time.Sleep(1200 * time.Millisecond)
	d, err := c.Get(context.Background(), q, true)
	if err != nil || string(d.Body) != "later" {
		t.Fatalf("after the delay: %v %v", d, err)
	}
	if n := e.raw.Exists(context.Background(), set).Val(); n != 0 {
		t.Errorf("%s still exists", set)
	}
	if _, err := e.raw.ZScore(context.Background(), e.prefix+"_kombu_go.delayed", "q:"+q).Result(); !errors.Is(err, goredis.Nil) {
		t.Errorf("index entry for q:%s still there (%v)", q, err)
	}
}

// TestDelaySurvivesRestart: delayed messages are kept by Redis as the
// lists are: with AOF, a restart during the delay loses nothing, and the
// message arrives when due.
func TestDelaySurvivesRestart(t *testing.T) {
	srv := brokertest.StartRedis(t)
	url := srv.URL(0)
	open := func() transport.Conn {
		u, _ := transport.Parse(url)
		c, err := kredis.Driver{}.Open(context.Background(), u, transport.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := open()
	start := time.Now()
	for _, p := range []*transport.Publishing{
		{RoutingKey: "work", Body: []byte("low"), Delay: 2 * time.Second},
		{RoutingKey: "work", Body: []byte("high"), Delay: 2 * time.Second, Properties: transport.Properties{Priority: 9}},
	} {
		if err := c.Publish(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	srv.Stop()
	srv.Start()
	c = open()
	defer c.Close()
	var got []string
	for deadline := time.Now().Add(10 * time.Second); len(got) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		d, err := c.Get(context.Background(), "work", true)
		if errors.Is(err, transport.ErrEmpty) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(start) < 2*time.Second {
			t.Errorf("%q arrived after %v, before its delay of 2 s", d.Body, time.Since(start))
		}
		got = append(got, string(d.Body))
	}
	// Kombu's order: the lower priority number first.
	if len(got) != 2 || got[0] != "low" || got[1] != "high" {
		t.Fatalf("after a restart: %q, want low then high", got)
	}
}

// TestDelayLateness measures how late delayed messages arrive.
func TestDelayLateness(t *testing.T) {
	if testing.Short() {
		t.Skip("takes several seconds")
	}
	e := newEnv(t)
	c := e.dial()
	q := "work"
	p50, p99, worst := transporttest.Lateness(transporttest.DelayLateness(t, c, q, 40))
	t.Logf("redis: 40 messages delayed 1-3.9 s: lateness p50 %v p99 %v max %v", p50, p99, worst)
	if worst > time.Second {
		t.Errorf("a message arrived %v late, want within a second", worst)
	}
}
