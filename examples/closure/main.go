// Command closure shows a goroutine that captures a traced context in a
// closure. The closure keeps the trace: an often-cited article claims that
// closures lose the context, but the captured variable is the same value.
//
// ctxwatch should report the `go` line in handle as propagated for every
// trace (100% retention) and no break.
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

var done atomic.Int64

func handle(ctx context.Context, n int) {
	ctx = context.WithValue(ctx, traceKey{}, fmt.Sprintf("%032x", n+1))

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // want:spawn propagated
		defer wg.Done()
		work(ctx)
	}()
	wg.Wait()
}

func work(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value(traceKey{}) != nil {
		done.Add(1)
	}
}

func main() {
	const traces = 50
	for i := range traces {
		handle(context.Background(), i)
	}
	fmt.Printf("closure: traces %d kept %d\n", traces, done.Load())
}
