package filesystem_test

import (
	"testing"

	"github.com/kombu-go/kombu/internal/simpletest"
)

func TestSimpleQueueAndPools(t *testing.T) { simpletest.Run(t, "filesystem://"+t.TempDir()) }
