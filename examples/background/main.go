// Command background shows a goroutine, started inside a traced function,
// that ignores the request context and starts from context.Background().
//
// ctxwatch should report lost-at-spawn for every trace: at the `go` line in
// handle (the spawn site) and at the WithTimeout line (the check site).
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

type traceKey struct{}

var lost atomic.Int64

func handle(ctx context.Context, n int) {
	ctx = context.WithValue(ctx, traceKey{}, fmt.Sprintf("%032x", n+1))
	_ = ctx // the request context is not handed to the goroutine

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // want:spawn lost-at-spawn
		defer wg.Done()
		ctx := context.Background()
		ctx, cancel := context.WithTimeout(ctx, time.Second) // want:site lost-at-spawn
		defer cancel()
		if ctx.Value(traceKey{}) == nil {
			lost.Add(1)
		}
	}()
	wg.Wait()
}

func main() {
	const traces = 50
	for i := range traces {
		handle(context.Background(), i)
	}
	fmt.Printf("background: traces %d lost %d\n", traces, lost.Load())
}
