package interop_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
)

// A Go shovel between Python Kombu services on different brokers: what
// Python reads after the move is what it reads from a message Python
// published on that broker itself (body, compression, headers, content
// type and encoding, ids, type, app id, priority, delivery mode), from
// Redis to RabbitMQ and from RabbitMQ to Redis.
func TestShovelBetweenKombuServices(t *testing.T) {
	e := newRedisEnv(t)
	amqpURL := brokertest.AMQPURL(t)
	redisConn := e.dial()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	amqpConn, err := kombu.Dial(ctx, amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer amqpConn.Close()

	var b [4]byte
	_, _ = rand.Read(b[:])
	name := func(what string) string { return "kombu-go.interop.shovel." + what + "." + hex.EncodeToString(b[:]) }
	messages := func(key string) []map[string]any {
		common := map[string]any{"correlation_id": "c-1", "type": "shop.OrderPlaced", "app_id": "shop",
			"headers": map[string]any{"trace": "00-abc-01", "n": 3, "ok": true, "list": []any{"a", 1}}}
		out := []map[string]any{
			{"body": map[string]any{"id": 1, "name": "ada"}, "message_id": "m-1"},
			{"body": map[string]any{"id": 2, "blob": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}, "serializer": "msgpack", "compression": "zlib", "message_id": "m-2"},
			{"body": "plain text", "serializer": "raw", "content_type": "text/plain", "content_encoding": "utf-8", "message_id": "m-3"},
			{"body": map[string]any{"id": 4}, "priority": 3, "message_id": "m-4"},
		}
		for _, m := range out {
			m["routing_key"] = key
			for k, v := range common {
				m[k] = v
			}
		}
		return out
	}
	accept := []string{"--accept", "json,msgpack,text/plain"}

	t.Run("redis→amqp", func(t *testing.T) {
		src, moved, ref := kombu.Queue{Name: name("src")}, kombu.Queue{Name: name("moved"), MaxPriority: 9}, kombu.Queue{Name: name("ref"), MaxPriority: 9}
		if _, err := src.Declare(ctx, redisConn); err != nil {
			t.Fatal(err)
		}
		for _, q := range []kombu.Queue{moved, ref} {
			if _, err := q.Declare(ctx, amqpConn); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = q.Delete(context.Background(), amqpConn) })
		}
		e.peer("publish", messages(src.Name), "--transport-options", e.pyOptions())
		pyPublish(t, amqpURL, messages(ref.Name))
		shovel(t, redisConn, src, amqpConn, moved.Name)
		compareKombuViews(t, pyConsume(t, amqpURL, moved.Name, 4, accept...), pyConsume(t, amqpURL, ref.Name, 4, accept...))
	})

	t.Run("amqp→redis", func(t *testing.T) {
		src := kombu.Queue{Name: name("src"), MaxPriority: 9}
		moved, ref := kombu.Queue{Name: name("moved")}, kombu.Queue{Name: name("ref")}
		if _, err := src.Declare(ctx, amqpConn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = src.Delete(context.Background(), amqpConn) })
		for _, q := range []kombu.Queue{moved, ref} {
			if _, err := q.Declare(ctx, redisConn); err != nil {
				t.Fatal(err)
			}
		}
		pyPublish(t, amqpURL, messages(src.Name))
		e.peer("publish", messages(ref.Name), "--transport-options", e.pyOptions())
		shovel(t, amqpConn, src, redisConn, moved.Name)
		opts := append([]string{"--transport-options", e.pyOptions()}, accept...)
		var got, want []pyMessage
		if err := json.Unmarshal(e.peer("consume", nil, append([]string{moved.Name, "4"}, opts...)...), &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(e.peer("consume", nil, append([]string{ref.Name, "4"}, opts...)...), &want); err != nil {
			t.Fatal(err)
		}
		compareKombuViews(t, got, want)
	})
}

// shovel moves what src holds to the queue named to through the default
// exchange, and returns once it is all moved.
func shovel(t *testing.T, src *kombu.Connection, q kombu.Queue, dst *kombu.Connection, to string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := kombu.NewShovel(src, q, dst, kombu.Exchange{}, kombu.WithShovelRoutingKey(to), kombu.WithShovelDrain())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatalf("shovel: %v", err)
	}
	if st := s.Stats(); st.Moved != 4 {
		t.Fatalf("shovel stats %+v, want 4 moved", st)
	}
}

// compareKombuViews checks that Python Kombu reads the moved messages as
// it reads the ones it published on the destination broker itself.
func compareKombuViews(t *testing.T, got, want []pyMessage) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	byID := func(ms []pyMessage) map[string]pyMessage {
		out := map[string]pyMessage{}
		for _, m := range ms {
			out[fmt.Sprint(m.Properties["message_id"])] = m
		}
		return out
	}
	g, w := byID(got), byID(want)
	for id, wm := range w {
		gm, ok := g[id]
		if !ok {
			t.Errorf("message %s was not moved", id)
			continue
		}
		if string(gm.Body) != string(wm.Body) || string(gm.Raw) != string(wm.Raw) {
			t.Errorf("%s: body %s (raw %q), Kombu published %s (raw %q)", id, gm.Body, gm.Raw, wm.Body, wm.Raw)
		}
		if gm.ContentType != wm.ContentType || gm.ContentEncoding != wm.ContentEncoding {
			t.Errorf("%s: %s/%s, Kombu published %s/%s", id, gm.ContentType, gm.ContentEncoding, wm.ContentType, wm.ContentEncoding)
		}
		if !reflect.DeepEqual(gm.Headers, wm.Headers) {
			t.Errorf("%s: headers\n got %v\nwant %v", id, gm.Headers, wm.Headers)
		}
		for _, k := range []string{"correlation_id", "message_id", "type", "app_id", "reply_to", "delivery_mode", "priority"} {
			gv, wv := gm.Properties[k], wm.Properties[k]
			if k == "priority" && gv == nil && wv == float64(0) {
				// kombu-go's AMQP transport leaves a priority of 0 out, as
				// amqp091-go does, where Kombu sends 0: Kombu reads None.
				continue
			}
			if !reflect.DeepEqual(gv, wv) {
				t.Errorf("%s: property %s = %v, Kombu published %v", id, k, gm.Properties[k], wm.Properties[k])
			}
		}
	}
}
