// Command afterfunc registers work inside a trace that the runtime runs
// later on a goroutine of its own: time.AfterFunc (started by the timer)
// and context.AfterFunc (started when the context is canceled, here by the
// request's own cancel call). Of each kind, one callback keeps the
// request's context and one starts from context.Background().
//
// ctxwatch should report the two registration lines whose callbacks use
// the request's context as propagated, and lost-at-spawn at the two whose
// callbacks start from Background (the registration line is the spawn
// stack's first frame: ctxwatch follows the func value registered to the
// goroutine that runs it) and at those callbacks' WithCancel lines.
//
// The program's own truth: each callback reads the trace back from the
// context it made (kept, or lost when there is none); the request waits
// for its four callbacks before the next one. The last line is
// "afterfunc: requests N kept 2N lost 2N".
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

var kept, lost atomic.Int64

func handle(n int) {
	ctx := context.WithValue(context.Background(), traceKey{}, fmt.Sprintf("%032x", n+1))

	var wg sync.WaitGroup
	wg.Add(4)
	time.AfterFunc(time.Millisecond, func() { // want:spawn propagated
		defer wg.Done()
		use(ctx)
	})
	time.AfterFunc(time.Millisecond, func() { // want:spawn lost-at-spawn
		defer wg.Done()
		c, cancel := context.WithCancel(context.Background()) // want:site lost-at-spawn
		defer cancel()
		count(c)
	})

	cctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(cctx, func() { // want:spawn propagated
		defer wg.Done()
		use(ctx)
	})
	context.AfterFunc(cctx, func() { // want:spawn lost-at-spawn
		defer wg.Done()
		c, cancel := context.WithCancel(context.Background()) // want:site lost-at-spawn
		defer cancel()
		count(c)
	})
	cancel() // runs both context.AfterFunc callbacks
	wg.Wait()
}

func use(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	count(ctx)
}

func count(ctx context.Context) {
	if ctx.Value(traceKey{}) != nil {
		kept.Add(1)
	} else {
		lost.Add(1)
	}
}

func main() {
	const requests = 20
	for n := range requests {
		handle(n)
	}
	fmt.Printf("afterfunc: requests %d kept %d lost %d\n", requests, kept.Load(), lost.Load())
}
