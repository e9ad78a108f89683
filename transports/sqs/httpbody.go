package sqs

import (
	"bytes"
	"io"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// WholeBodies wraps an SQS client's HTTP client so that the HTTP transport
// gets a request body of its own, read into memory first. The transport
// wraps its own client so; a program that makes its own *sqs.Client (from
// its own aws.Config) beside it should too:
//
//	client := sqs.NewFromConfig(cfg, func(o *sqs.Options) {
//		o.HTTPClient = kombusqs.WholeBodies(o.HTTPClient)
//	})
//
// Why: smithy-go closes (and so empties) the body it built as soon as the
// response's headers arrive; a server that answers before the transport's
// write loop has finished with the body (goaws in process, every few
// thousand requests; AWS too: aws-sdk-go-v2 issue 2737) then makes the
// write loop fail and close the connection under the response, and the
// receive fails with "use of closed network connection" after SQS has
// served it: a ReceiveMessage's messages stay invisible for the visibility
// timeout. A query-protocol body is small (a message at most 256 KiB,
// base64), so the copy costs little.
//
// A nil c stands for the SDK's default client (awshttp.NewBuildableClient).
func WholeBodies(c sqs.HTTPClient) sqs.HTTPClient {
	if c == nil {
		c = awshttp.NewBuildableClient()
	}
	return wholeBodies{c}
}

type wholeBodies struct{ c sqs.HTTPClient }

func (w wholeBodies) Do(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return w.c.Do(r)
	}
	b, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.ContentLength = int64(len(b))
	return w.c.Do(r)
}
