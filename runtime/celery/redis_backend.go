package celery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	kombu "github.com/kombu-go/kombu/runtime"
)

// KeyPrefix is the prefix of Celery's result keys and channels in Redis.
const KeyPrefix = "celery-task-meta-"

// RedisBackend is Celery's redis:// result backend: a task's state is the
// JSON document under celery-task-meta-<id>, kept for Expires (a day, as
// Celery's result_expires), and published on the channel of the same name
// each time it is written, which a waiting reader subscribes to.
type RedisBackend struct {
	client  *redis.Client
	Expires time.Duration
}

// NewRedisBackend connects to the result backend at a redis:// or
// rediss:// URL (the one given to Celery as result_backend).
func NewRedisBackend(url string) (*RedisBackend, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("celery: result backend: %w: %v", kombu.ErrInvalidURL, redactedErr(err))
	}
	return &RedisBackend{client: redis.NewClient(opts), Expires: 24 * time.Hour}, nil
}

// redactedErr drops the error's text when it might repeat the URL (and
// its password).
func redactedErr(err error) string {
	return "cannot parse the URL (scheme redis:// or rediss://, host, port, database)"
}

func key(id string) string { return KeyPrefix + id }

func (b *RedisBackend) ReplyTo() string { return "" }

func (b *RedisBackend) Close() error { return b.client.Close() }

// Store writes meta unless the task already succeeded (Celery keeps a
// SUCCESS against a late duplicate), and publishes it.
func (b *RedisBackend) Store(ctx context.Context, req *Request, meta *Meta) error {
	ctx, cancel := storeCtx(ctx)
	defer cancel()
	if req != nil {
		meta.GroupID, meta.ParentID = req.Group, req.ParentID
	}
	data, err := json.Marshal(meta)
	if err != nil {
		return backendErr("encode", meta.TaskID, fmt.Errorf("%w: %v", kombu.ErrEncode, err))
	}
	cur, err := b.Meta(ctx, meta.TaskID)
	if err != nil {
		return err
	}
	if cur.Status == StateSuccess {
		return nil
	}
	k := key(meta.TaskID)
	_, err = b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if b.Expires > 0 {
			p.SetEx(ctx, k, data, b.Expires)
		} else {
			p.Set(ctx, k, data, 0)
		}
		p.Publish(ctx, k, data)
		return nil
	})
	if err != nil {
		return backendErr("store", meta.TaskID, err)
	}
	return nil
}

// Meta reads the task's state; PENDING when none is stored.
func (b *RedisBackend) Meta(ctx context.Context, id string) (*Meta, error) {
	data, err := b.client.Get(ctx, key(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return &Meta{TaskID: id, Status: StatePending, Result: json.RawMessage("null")}, nil
	}
	if err != nil {
		return nil, backendErr("read", id, err)
	}
	return decodeMeta(id, data)
}

func decodeMeta(id string, data []byte) (*Meta, error) {
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil || m.Status == "" {
		return nil, backendErr("read", id, fmt.Errorf("%w: not a Celery result document", kombu.ErrDecode))
	}
	if m.TaskID == "" {
		m.TaskID = id
	}
	return &m, nil
}

// Wait subscribes to the task's channel, then reads the key (so that a
// state written in between is not missed), and waits for a final state.
func (b *RedisBackend) Wait(ctx context.Context, id string) (*Meta, error) {
	ps := b.client.Subscribe(ctx, key(id))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		return nil, backendErr("subscribe", id, err)
	}
	m, err := b.Meta(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.Ready() {
		return m, nil
	}
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil, backendErr("wait for", id, ctx.Err())
		case msg, ok := <-ch:
			if !ok {
				return nil, backendErr("wait for", id, errors.New("subscription closed"))
			}
			m, err := decodeMeta(id, []byte(msg.Payload))
			if err != nil {
				return nil, err
			}
			if m.Ready() {
				return m, nil
			}
		}
	}
}

// Forget deletes the task's state.
func (b *RedisBackend) Forget(ctx context.Context, id string) error {
	if err := b.client.Del(ctx, key(id)).Err(); err != nil {
		return backendErr("forget", id, err)
	}
	return nil
}
