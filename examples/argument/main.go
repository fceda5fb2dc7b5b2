// Command argument shows two goroutines started from the same traced
// function: one gets the request context as an argument (kept), the other
// gets context.TODO() (lost).
//
// ctxwatch should report the `go process` line as propagated, and
// lost-at-spawn at the `go process2` line and at process2's WithCancel line.
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

var (
	wg         sync.WaitGroup
	kept, lost atomic.Int64
)

func handle(ctx context.Context, n int) {
	ctx = context.WithValue(ctx, traceKey{}, fmt.Sprintf("%032x", n+1))

	wg.Add(2)
	go process(ctx, n)             // want:spawn propagated
	go process2(context.TODO(), n) // want:spawn lost-at-spawn
	wg.Wait()
}

func process(ctx context.Context, n int) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value(traceKey{}) != nil {
		kept.Add(1)
	}
	_ = n
}

func process2(ctx context.Context, n int) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(ctx) // want:site lost-at-spawn
	defer cancel()
	if ctx.Value(traceKey{}) == nil {
		lost.Add(1)
	}
	_ = n
}

func main() {
	const traces = 50
	for i := range traces {
		handle(context.Background(), i)
	}
	fmt.Printf("argument: traces %d kept %d lost %d\n", traces, kept.Load(), lost.Load())
}
