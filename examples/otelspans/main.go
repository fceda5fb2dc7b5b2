// Command otelspans shows the OpenTelemetry SDK's tracer in the patterns
// that keep or break a trace. Each iteration starts a root span "request"
// (a new unit of work: the previous request span has ended, so no break).
//
// ctxwatch should report:
//   - the `go` line that starts "child" from ctx: propagated;
//   - the `go` line that starts "orphan" from context.Background(): new-root,
//     with the orphan's Start line as the site;
//   - the "detached" Start line, made while "request" is still open: dropped;
//   - the `go keep(dctx)` line, after re-attaching the same span context to a
//     fresh context: propagated (re-attaching is no break).
//
// Only the built-in OTel span key is used: ctxwatch needs no extra flags.
package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var (
	tracer                  trace.Tracer
	kept, newRoots, dropped atomic.Int64
)

func handle() {
	ctx, span := tracer.Start(context.Background(), "request")

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // want:spawn propagated
		defer wg.Done()
		_, s := tracer.Start(ctx, "child")
		defer s.End()
		if s.SpanContext().TraceID() == span.SpanContext().TraceID() {
			kept.Add(1)
		}
	}()
	go func() { // want:spawn new-root
		defer wg.Done()
		_, s := tracer.Start(context.Background(), "orphan") // want:site new-root
		defer s.End()
		if s.SpanContext().TraceID() != span.SpanContext().TraceID() {
			newRoots.Add(1)
		}
	}()

	_, s := tracer.Start(context.Background(), "detached") // want:site dropped
	s.End()
	if s.SpanContext().TraceID() != span.SpanContext().TraceID() {
		dropped.Add(1)
	}

	dctx := trace.ContextWithSpanContext(context.Background(), span.SpanContext())
	go keep(dctx, &wg) // want:spawn propagated

	wg.Wait()
	span.End()
}

func keep(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if trace.SpanContextFromContext(ctx).IsValid() {
		kept.Add(1)
	}
}

func main() {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	tracer = tp.Tracer("github.com/ctxwatch/ctxwatch/examples/otelspans")

	const requests = 30
	for range requests {
		handle()
	}
	fmt.Printf("otelspans: requests %d kept %d new-root %d dropped %d\n", requests, kept.Load(), newRoots.Load(), dropped.Load())
}
