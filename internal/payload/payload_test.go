package payload

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestOrderEncodesToSize(t *testing.T) {
	body, err := proto.Marshal(Order())
	if err != nil {
		t.Fatal(err)
	}
	if len(body) != Size {
		t.Fatalf("Order encodes to %d bytes, want %d", len(body), Size)
	}
}
