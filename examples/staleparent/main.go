// Command staleparent shows spans started on a parent span that has
// already ended. Each request starts a root span "request" and then:
//   - processes its items with the fixed loop, `itemCtx, span :=
//     tracer.Start(ctx, "item")`: every item a child of the open request
//     span (no break);
//   - processes them with the buggy loop, `ctx, span = tracer.Start(ctx,
//     "item")`, each item's span ended in its iteration: every item after
//     the first is a child of the previous item, which has ended;
//   - audits with a function that keeps using its context after
//     span.End(): its "audit-log" span's parent has ended;
//   - hands the request to two goroutines that run once the request span
//     has ended (fire-and-forget work that outlives its request): one
//     starts a span on the request's context, one first re-attaches the
//     request span to context.Background() (trace.ContextWithSpan, to
//     escape cancellation) and starts a span there. Their parent has
//     ended, but another goroutine started it: normal, no break.
//
// ctxwatch should report stale-parent at the buggy loop's Start line
// (items-1 times per request) and at the audit-log Start line (once per
// request), nothing at the fixed loop, and both `go` lines propagated.
//
// The program's own truth: every span it starts, it asks the SDK for the
// span's parent, and counts the spans whose parent is one this goroutine
// ended before (stale-parent), and the spans of the goroutines whose
// parent the request goroutine had ended (async). The last line is
// "staleparent: requests N items N stale-parent N async N kept N", items
// being the items of each loop, each request.
package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var (
	tracer       trace.Tracer
	async, kept  atomic.Int64
	staleParents int
	endedHere    = map[trace.SpanID]bool{} // spans the request goroutine ended
)

const items = 5

// count notes a span the request goroutine started: stale when its parent
// is a span this goroutine had ended.
func count(s trace.Span) {
	if endedHere[s.(sdktrace.ReadOnlySpan).Parent().SpanID()] {
		staleParents++
	}
}

// end ends a span of the request goroutine and remembers it.
func end(s trace.Span) {
	s.End()
	endedHere[s.SpanContext().SpanID()] = true
}

// work is what an item does with its context: a deadline on it, while the
// item's span is open.
func work(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = ctx
}

func itemsFixed(ctx context.Context) {
	for range items {
		itemCtx, span := tracer.Start(ctx, "item")
		count(span)
		work(itemCtx)
		end(span)
	}
}

func itemsStale(ctx context.Context) {
	var span trace.Span
	for range items {
		ctx, span = tracer.Start(ctx, "item") // want:site stale-parent
		count(span)
		work(ctx)
		end(span)
	}
}

func audit(ctx context.Context) {
	ctx, span := tracer.Start(ctx, "audit")
	count(span)
	end(span)
	_, s := tracer.Start(ctx, "audit-log") // want:site stale-parent
	count(s)
	end(s)
}

func handle() {
	ctx, span := tracer.Start(context.Background(), "request")
	want := span.SpanContext()
	ended := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // want:spawn propagated
		defer wg.Done()
		<-ended
		_, s := tracer.Start(ctx, "notify")
		defer s.End()
		childOfEnded(s, want)
	}()
	go func() { // want:spawn propagated
		defer wg.Done()
		<-ended
		dctx := trace.ContextWithSpan(context.Background(), trace.SpanFromContext(ctx))
		_, s := tracer.Start(dctx, "reindex")
		defer s.End()
		childOfEnded(s, want)
	}()

	itemsFixed(ctx)
	itemsStale(ctx)
	audit(ctx)
	end(span)
	close(ended)
	wg.Wait()
}

// childOfEnded counts a span of another goroutine whose parent, the
// request span, had ended when it started.
func childOfEnded(s trace.Span, request trace.SpanContext) {
	if s.SpanContext().TraceID() == request.TraceID() {
		kept.Add(1)
	}
	if s.(sdktrace.ReadOnlySpan).Parent().SpanID() == request.SpanID() && endedHere[request.SpanID()] {
		async.Add(1)
	}
}

func main() {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	tracer = tp.Tracer("github.com/ctxwatch/ctxwatch/examples/staleparent")

	const requests = 10
	for range requests {
		handle()
	}
	fmt.Printf("staleparent: requests %d items %d stale-parent %d async %d kept %d\n",
		requests, items, staleParents, async.Load(), kept.Load())
}
