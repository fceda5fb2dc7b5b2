// Command helpers starts its goroutines through sync.WaitGroup.Go (Go
// 1.25+): the `go` statement is in the standard library, the user's call
// is the wg.Go line. One function keeps the request's context, the other
// starts from context.Background().
//
// ctxwatch should report the first wg.Go line as propagated, and
// lost-at-spawn at the second wg.Go line (the user's frame in the spawn
// stack) and at the WithCancel line of the function it runs.
//
// The program's own truth: each function reads the trace back from the
// context it made (kept, or lost when there is none). The last line is
// "helpers: traces N kept N lost N".
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

type traceKey struct{}

var kept, lost atomic.Int64

func handle(n int) {
	ctx := context.WithValue(context.Background(), traceKey{}, fmt.Sprintf("%032x", n+1))

	var wg sync.WaitGroup
	wg.Go(func() { index(ctx) })                    // want:spawn propagated
	wg.Go(func() { reindex(context.Background()) }) // want:spawn lost-at-spawn
	wg.Wait()
}

func index(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value(traceKey{}) != nil {
		kept.Add(1)
	}
}

func reindex(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx) // want:site lost-at-spawn
	defer cancel()
	if ctx.Value(traceKey{}) == nil {
		lost.Add(1)
	}
}

func main() {
	const traces = 30
	for n := range traces {
		handle(n)
	}
	fmt.Printf("helpers: traces %d kept %d lost %d\n", traces, kept.Load(), lost.Load())
}
