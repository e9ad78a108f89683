// Command stdout traces a publish and its handling with otelkombu and
// prints the spans and metrics to stdout with OpenTelemetry's stdout
// exporters:
//
//	cd otelkombu && go run ./examples/stdout                 # the in-process broker
//	cd otelkombu && go run ./examples/stdout amqp://guest:guest@127.0.0.1:5672//
//
// A real program would export to a collector instead (otlptrace,
// otlpmetric); nothing else changes.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/kombu-go/kombu/otelkombu"
	kombu "github.com/kombu-go/kombu/runtime"
	_ "github.com/kombu-go/kombu/transports/amqp"
	_ "github.com/kombu-go/kombu/transports/redis"
)

func main() {
	url := "memory://"
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	if err := run(context.Background(), url); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, url string) error {
	spans, err := stdouttrace.New(stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(ctx)
	metrics, err := stdoutmetric.New(stdoutmetric.WithPrettyPrint())
	if err != nil {
		return err
	}
	reader := sdkmetric.NewPeriodicReader(metrics)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx) // exports the metrics once more, at the end

	ic, err := otelkombu.NewInterceptor(otelkombu.WithTracerProvider(tp), otelkombu.WithMeterProvider(mp))
	if err != nil {
		return err
	}
	conn, err := kombu.Dial(ctx, url, kombu.WithInterceptors(ic))
	if err != nil {
		return err
	}
	defer conn.Close()

	queue := kombu.Queue{Name: "otelkombu.example", AutoDelete: true}
	handled := make(chan struct{})
	consumer, err := kombu.NewConsumer(conn, []kombu.Subscription{{
		Queue: queue,
		Handler: kombu.HandlerFunc(func(ctx context.Context, msg *kombu.Message) error {
			// ctx holds the process span: spans started from it nest there.
			fmt.Fprintf(os.Stderr, "handled %s\n", msg.Body)
			close(handled)
			return nil
		}),
	}})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- consumer.Run(runCtx) }()

	ctx, span := tp.Tracer("example").Start(ctx, "place order")
	err = kombu.NewProducer(conn, kombu.WithRoutingKey(queue.Name)).Publish(ctx, map[string]int{"order": 42})
	span.End()
	if err != nil {
		return err
	}
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the message was not handled")
	}
	stop()
	return <-ran
}
