package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/simpletest"
	kombu "github.com/kombu-go/kombu/runtime"
)

func TestSimpleQueueAndPools(t *testing.T) { simpletest.Run(t, brokertest.AMQPURL(t)) }

// RabbitMQ refuses to redeclare an exchange or a queue with other
// settings: a SimpleQueue's are durable, as Kombu declares them, so a
// Python SimpleQueue on the same name is accepted (interop/ runs one).
func TestSimpleQueueDeclaresWhatKombuDeclares(t *testing.T) {
	url := brokertest.AMQPURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func() *kombu.Connection {
		conn, err := kombu.Dial(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	conn := dial()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "kombu-go-test.declare." + hex.EncodeToString(b)
	q, err := kombu.NewSimpleQueue[string](ctx, conn, name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		q.Close()
		_, _ = kombu.Queue{Name: name}.Delete(context.Background(), conn)
		_ = kombu.Exchange{Name: name}.Delete(context.Background(), conn)
	}()
	if err := (kombu.Exchange{Name: name, Type: kombu.ExchangeDirect}).Declare(ctx, conn); err != nil {
		t.Errorf("durable direct exchange: %v", err)
	}
	if _, err := (kombu.Queue{Name: name}).Declare(ctx, conn); err != nil {
		t.Errorf("durable queue: %v", err)
	}
	other := dial() // a refused declaration closes the AMQP channel: use another connection
	if _, err := (kombu.Queue{Name: name, Transient: true}).Declare(ctx, other); !errors.Is(err, kombu.ErrPrecondition) {
		t.Errorf("a transient queue of the same name: %v, want ErrPrecondition", err)
	}
}
