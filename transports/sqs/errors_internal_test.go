package sqs

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/kombu-go/kombu/runtime/transport"
)

// The error mapping for SQS's two protocols, without a server: the query
// protocol (goaws, and the service/sqs versions this module requires)
// answers codes such as "AWS.SimpleQueueService.NonExistentQueue"; the
// JSON protocol of later service/sqs versions answers "QueueDoesNotExist"
// (and, where the service is query-compatible, the query code from the
// x-amzn-query-error header). Each must map to the same sentinel.
func TestErrorCodesOfBothProtocols(t *testing.T) {
	cases := []struct {
		code          string
		notFound      bool
		accessRefused bool
		goneReceipt   bool
	}{
		{code: "AWS.SimpleQueueService.NonExistentQueue", notFound: true}, // query
		{code: "QueueDoesNotExist", notFound: true},                       // JSON
		{code: "NonExistentQueue", notFound: true},
		{code: "InvalidClientTokenId", accessRefused: true},        // both
		{code: "UnrecognizedClientException", accessRefused: true}, // JSON
		{code: "SignatureDoesNotMatch", accessRefused: true},
		{code: "AccessDenied", accessRefused: true},          // query
		{code: "AccessDeniedException", accessRefused: true}, // JSON
		{code: "AWS.SimpleQueueService.MessageNotInflight", goneReceipt: true},
		{code: "MessageNotInflight", goneReceipt: true},
		{code: "ReceiptHandleIsInvalid", goneReceipt: true},
		{code: "InvalidReceiptHandle", goneReceipt: true},
		{code: "AWS.SimpleQueueService.QueueDeletedRecently"},
		{code: "QueueDeletedRecently"},
		{code: "InvalidParameterValue"},
	}
	m := masker{secret: "s3cr3t/key"}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			api := &smithy.GenericAPIError{Code: c.code, Message: "refused with s3cr3t/key in it"}
			err := m.wrap("SendMessage", "orders", fmt.Errorf("operation error SQS: SendMessage: %w", api))
			var e *Error
			if !errors.As(err, &e) || e.Code != c.code {
				t.Fatalf("wrap gave %#v, want an *Error with code %q", err, c.code)
			}
			if got := errors.Is(err, transport.ErrNotFound); got != c.notFound {
				t.Errorf("errors.Is(ErrNotFound) = %v, want %v", got, c.notFound)
			}
			if got := errors.Is(err, transport.ErrAccessRefused); got != c.accessRefused {
				t.Errorf("errors.Is(ErrAccessRefused) = %v, want %v", got, c.accessRefused)
			}
			if got := isGoneReceipt(errorCode(err)); got != c.goneReceipt {
				t.Errorf("isGoneReceipt = %v, want %v", got, c.goneReceipt)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the secret shows in %q", err)
			}
			if !strings.Contains(err.Error(), `SendMessage "orders"`) {
				t.Errorf("%q does not say what was done to which queue", err)
			}
			var back *smithy.GenericAPIError
			if !errors.As(err, &back) {
				t.Errorf("the SDK's error is not reachable through %q", err)
			}
		})
	}
}

// A request that never reached SQS has no code and matches neither
// sentinel, unless the SDK found no credentials to sign it with.
func TestErrorWithoutCode(t *testing.T) {
	m := masker{}
	err := m.wrap("ReceiveMessage", "q", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"))
	if errors.Is(err, transport.ErrNotFound) || errors.Is(err, transport.ErrAccessRefused) {
		t.Errorf("a refused connection matches a sentinel: %v", err)
	}
	err = m.wrap("ReceiveMessage", "q", errors.New("get identity: get credentials: failed to refresh cached credentials, no EC2 IMDS role found"))
	if !errors.Is(err, transport.ErrAccessRefused) {
		t.Errorf("missing credentials do not match ErrAccessRefused: %v", err)
	}
}
