package virtual

import (
	"testing"

	"github.com/kombu-go/kombu/runtime/transport"
)

// TestDecodeEnvelopeIntoAllocs holds the fast decoder to its allocations
// for the envelope the SDK writes (benchEnvelope) into a delivery the
// caller allocated: the headers map, its one value boxed, the map's
// storage and one arena for the body and every string. It was 10 while
// each string and the body had an allocation of its own.
func TestDecodeEnvelopeIntoAllocs(t *testing.T) {
	raw := benchEnvelope(t)
	var d transport.Delivery
	allocs := testing.AllocsPerRun(200, func() {
		if !decodeEnvelopeInto(raw, &d) {
			t.Fatal("the fast decoder gave up on the SDK's envelope")
		}
	})
	if allocs > 4 {
		t.Errorf("decoding an envelope costs %.1f allocations, budget 4", allocs)
	}
}
