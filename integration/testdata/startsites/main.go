// Command startsites starts spans on parents of its own goroutine through
// helpers, for the Start sites' retention (stale-parent). Each request
// starts a root span "request" and then:
//   - a loop through startStep, a helper kept out of line that calls
//     tracer.Start: `ctx, span = startStep(ctx, ...)`, each step's span
//     ended in its iteration (stale after the first);
//   - a correctly nested loop through startNested, a helper the compiler
//     inlines (all kept);
//   - a loop like the first through a tracer taken from the otel package
//     before the SDK's provider was set (the global delegate, which calls
//     the SDK's Start from its own Start): stale after the first.
//
// The last line is "startsites: requests N steps N".
package main

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var (
	tracer   trace.Tracer
	delegate = otel.Tracer("github.com/ctxwatch/ctxwatch/integration/testdata/startsites/delegate")
)

const steps = 4

//go:noinline
func startStep(ctx context.Context, name string) (context.Context, trace.Span) {
	return tracer.Start(ctx, name) // want:start helper
}

func startNested(ctx context.Context, name string) (context.Context, trace.Span) {
	return tracer.Start(ctx, name) // want:start inlined
}

func stepsStale(ctx context.Context) {
	var span trace.Span
	for range steps {
		ctx, span = startStep(ctx, "step")
		span.End()
	}
}

func stepsNested(ctx context.Context) {
	for range steps {
		stepCtx, span := startNested(ctx, "nested")
		_ = stepCtx
		span.End()
	}
}

func stepsDelegate(ctx context.Context) {
	var span trace.Span
	for range steps {
		ctx, span = delegate.Start(ctx, "delegated") // want:start delegate
		span.End()
	}
}

func handle() {
	ctx, span := tracer.Start(context.Background(), "request")
	stepsStale(ctx)
	stepsNested(ctx)
	stepsDelegate(ctx)
	span.End()
}

func main() {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)
	tracer = tp.Tracer("github.com/ctxwatch/ctxwatch/integration/testdata/startsites")

	const requests = 10
	for range requests {
		handle()
	}
	fmt.Printf("startsites: requests %d steps %d\n", requests, steps)
}
