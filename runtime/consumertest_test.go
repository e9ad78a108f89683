package kombu_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/consumertest"
	kombu "github.com/kombu-go/kombu/runtime"
	"github.com/kombu-go/kombu/runtime/transport"
)

func TestShutdownNeverDeadLettersOrStrands(t *testing.T) {
	consumertest.Shutdown(t, brokerURL(t))
}

func TestDefaultPrefetchFitsTheHandlers(t *testing.T) {
	consumertest.Prefetch(t, brokerURL(t))
}

func TestDeadLetterSaysWhy(t *testing.T) {
	consumertest.DeadLetterReason(t, brokerURL(t), false)
}

// Drivers name the header through package transport, which cannot import
// this one: both must say the same.
func TestErrorHeaderIsTheTransports(t *testing.T) {
	if kombu.ErrorHeader != transport.ErrorHeader {
		t.Fatalf("kombu.ErrorHeader %q, transport.ErrorHeader %q", kombu.ErrorHeader, transport.ErrorHeader)
	}
}
