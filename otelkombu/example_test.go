package otelkombu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"slices"

	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/kombu-go/kombu/otelkombu"
	kombu "github.com/kombu-go/kombu/runtime"
)

// Tracing a publish and its handling with the stdout exporter. The spans
// go to a buffer here, so that the example can print what does not change
// from run to run (ids and times do); give stdouttrace.New no writer to
// see them on stdout, as examples/stdout does.
func Example() {
	ctx := context.Background()
	var out bytes.Buffer
	exporter, err := stdouttrace.New(stdouttrace.WithWriter(&out))
	if err != nil {
		log.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer tp.Shutdown(ctx)

	ic, err := otelkombu.NewInterceptor(otelkombu.WithTracerProvider(tp))
	if err != nil {
		log.Fatal(err)
	}
	conn, err := kombu.Dial(ctx, "memory:///otelkombu-example", kombu.WithInterceptors(ic))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	handled := make(chan struct{})
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: kombu.Queue{Name: "orders"},
		Handler: kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
			defer close(handled)
			return nil
		}),
	}})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- consumer.Run(runCtx) }()

	ctx, span := tp.Tracer("shop").Start(ctx, "checkout")
	if err := kombu.NewProducer(conn, kombu.WithRoutingKey("orders")).Publish(ctx, map[string]int{"order": 42}); err != nil {
		log.Fatal(err)
	}
	span.End()
	<-handled
	stop()
	if err := <-ran; err != nil {
		log.Fatal(err)
	}

	// Spans are exported as they end; which ends first of the caller's
	// and the consumer's depends on scheduling, so they are sorted.
	var lines []string
	traces := map[string]bool{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var s struct {
			Name        string
			SpanKind    int
			SpanContext struct{ TraceID string }
		}
		if err := dec.Decode(&s); err != nil {
			log.Fatal(err)
		}
		traces[s.SpanContext.TraceID] = true
		lines = append(lines, s.Name+" "+[]string{1: "internal", 4: "producer", 5: "consumer"}[s.SpanKind])
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	fmt.Println("traces:", len(traces))
	// Output:
	// checkout internal
	// process orders consumer
	// publish orders producer
	// traces: 1
}
