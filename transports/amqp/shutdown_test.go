package amqp_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/brokertest"
	"github.com/kombu-go/kombu/internal/consumertest"
)

func TestShutdownNeverDeadLettersOrStrands(t *testing.T) {
	consumertest.Shutdown(t, brokertest.AMQPURL(t))
}
