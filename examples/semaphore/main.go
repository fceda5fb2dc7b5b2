// Command semaphore shows a timeout taken on context.Background() only to
// wait for a local semaphore (golang.org/x/sync/semaphore), by goroutines
// that then do their traced work on the request's context. handle runs each
// request in a root span "request"; it first waits for the semaphore the
// same way, on a timeout of its own on Background, then starts a child span
// "prepare" on the request's context, and starts workers that do the same:
// wait on Background, then start their span "work" on the request's
// context. The traceless timeouts are incidental: the work keeps the trace.
//
// ctxwatch should report the `go worker` line as propagated for every
// worker (100% retention) and no break: no lost-at-spawn for the workers'
// WithTimeout lines, no dropped for handle's.
//
// The program's own truth: every span it starts, handle's "prepare" and the
// workers' "work", is compared by trace id with the request span's; waits
// counts the semaphore waits on a context that carried no trace. The last
// line is "semaphore: requests N kept N prepared N dropped 0 lost 0 waits N"
// with kept = workers * requests, prepared = requests and waits =
// (workers + 1) * requests.
package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"
)

const workers = 3

var (
	tracer trace.Tracer
	// sem bounds the work in flight: two at a time, so that the
	// workers really wait for each other.
	sem = semaphore.NewWeighted(2)

	kept, prepared, dropped, lost, waits atomic.Int64
)

// acquire waits for the semaphore under a timeout of its own, on a context
// that has nothing to do with the request, and returns the release.
func acquire() func() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := sem.Acquire(ctx, 1); err != nil {
		panic(err)
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		waits.Add(1)
	}
	return func() { sem.Release(1) }
}

func handle() {
	ctx, span := tracer.Start(context.Background(), "request")
	defer span.End()
	want := span.SpanContext().TraceID()

	release := acquire()
	_, prep := tracer.Start(ctx, "prepare")
	time.Sleep(time.Millisecond) // hold the semaphore a little
	prep.End()
	release()
	if prep.SpanContext().TraceID() == want {
		prepared.Add(1)
	} else {
		dropped.Add(1)
	}

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go worker(ctx, want, &wg) // want:spawn propagated
	}
	wg.Wait()
}

func worker(ctx context.Context, want trace.TraceID, wg *sync.WaitGroup) {
	defer wg.Done()
	release := acquire()
	defer release()
	_, span := tracer.Start(ctx, "work")
	defer span.End()
	time.Sleep(time.Millisecond)
	if span.SpanContext().TraceID() == want {
		kept.Add(1)
	} else {
		lost.Add(1)
	}
}

func main() {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	tracer = tp.Tracer("github.com/ctxwatch/ctxwatch/examples/semaphore")

	const requests = 20
	for range requests {
		handle()
	}
	fmt.Printf("semaphore: requests %d kept %d prepared %d dropped %d lost %d waits %d\n",
		requests, kept.Load(), prepared.Load(), dropped.Load(), lost.Load(), waits.Load())
}
