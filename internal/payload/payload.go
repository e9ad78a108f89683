// Package payload is the message the speed measurements send: make bench
// (the bench module) and the allocation budgets (internal/alloctest) publish
// the same one, so that their figures describe the same work.
package payload

import (
	"strings"

	"google.golang.org/protobuf/proto"

	quickstartv1 "github.com/kombu-go/kombu/gen/examples/quickstart/v1"
)

// Size is the length of Order's protobuf encoding: the 100-byte body of
// issue 13's workloads.
const Size = 100

// Order returns a new quickstart OrderPlaced whose protobuf encoding is
// Size bytes long. Its customer name is padded to that length, so the
// message keeps the quickstart's shape (two short strings, an amount, two
// items) and every field costs what it would in real use.
func Order() *quickstartv1.OrderPlaced {
	m := &quickstartv1.OrderPlaced{OrderId: "A-0000001", Customer: "ada", AmountCents: 1250, Items: []string{"tea", "mug"}}
	// The name's length prefix stays one byte below 128 characters, so
	// every character added adds one byte to the encoding.
	m.Customer += strings.Repeat(".", Size-proto.Size(m))
	return m
}
