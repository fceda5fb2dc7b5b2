// Command otelunits is a long-running OpenTelemetry-traced target driven by
// its standard input, for tests that watch ctxwatch's metrics grow while a
// scraper reads them: it prints "ready", then for each line read runs one
// unit of work and prints "done N", and exits at end of input, printing
// "otelunits: units N kept N new-root N lost N dropped N".
//
// Each unit opens a root span "request" and, while it is open:
//   - starts a goroutine at one `go` line that begins a span on the
//     request's context in odd units (propagated) and on
//     context.Background() in even ones (new-root): the site's retention
//     is one half;
//   - starts a goroutine that takes a cancel context of
//     context.Background() and does nothing with the trace: lost-at-spawn;
//   - starts a span on context.Background() itself: dropped.
//
// Only the built-in OTel span key is used: ctxwatch needs no extra flags.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var kept, newRoots, lost, dropped int

func unit(tracer trace.Tracer, n int) {
	ctx, span := tracer.Start(context.Background(), "request")
	defer span.End()
	want := span.SpanContext().TraceID()

	from := ctx
	if n%2 == 0 {
		from = context.Background()
	}
	var wg sync.WaitGroup
	var same, lostOne bool
	wg.Add(2)
	go func() { // want:spawn new-root
		defer wg.Done()
		_, s := tracer.Start(from, "work") // want:site new-root
		defer s.End()
		same = s.SpanContext().TraceID() == want
	}()
	go func() { // want:spawn lost-at-spawn
		defer wg.Done()
		c, cancel := context.WithCancel(context.Background()) // want:site lost-at-spawn
		defer cancel()
		lostOne = !trace.SpanContextFromContext(c).IsValid()
	}()

	_, s := tracer.Start(context.Background(), "detached") // want:site dropped
	s.End()
	if s.SpanContext().TraceID() != want {
		dropped++
	}
	wg.Wait()
	if same {
		kept++
	} else {
		newRoots++
	}
	if lostOne {
		lost++
	}
}

func main() {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("github.com/ctxwatch/ctxwatch/integration/testdata/otelunits")

	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	n := 0
	for sc.Scan() {
		n++
		unit(tracer, n)
		fmt.Println("done", n)
	}
	fmt.Printf("otelunits: units %d kept %d new-root %d lost %d dropped %d\n", n, kept, newRoots, lost, dropped)
}
