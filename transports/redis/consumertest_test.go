package redis_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/consumertest"
)

func TestShutdownNeverDeadLettersOrStrands(t *testing.T) {
	consumertest.Shutdown(t, newEnv(t).url())
}

func TestDeadLetterSaysWhy(t *testing.T) {
	consumertest.DeadLetterReason(t, newEnv(t).url(), false)
}

func TestDefaultPrefetchFitsTheHandlers(t *testing.T) {
	consumertest.Prefetch(t, newEnv(t).url())
}
