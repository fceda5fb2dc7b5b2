// Command nocancel never makes a cancelable context: no WithCancel,
// WithTimeout or WithDeadline anywhere, only WithValue. Its only checks are
// WithValue calls: the trace under traceKey, and a request id under
// requestKey. Each unit of work starts two goroutines: tag derives its
// context from the traced one (its first WithValue, with a key that is not
// a trace key, carries the trace); tagDetached starts from
// context.Background(). Its imports are kept to fmt, context, sync and
// sync/atomic, so that as little as possible links package context's
// cancelable types into the binary. Even so (go1.26, `go tool nm`), the
// binary has *context.cancelCtx: its type, its itab and its Value and
// String methods (context's value lookup switches on it), and the itabs of
// *timerCtx and withoutCancelCtx; it has no WithCancel, WithDeadline,
// WithTimeout, propagateCancel or (*cancelCtx).cancel.
//
// ctxwatch should report the `go tag` line as propagated, and lost-at-spawn
// at the `go tagDetached` line and tagDetached's WithValue line.
//
// The program's own truth: each goroutine reads the trace back from the
// context it made (kept, or lost when there is none). The last line is
// "nocancel: units N kept N lost N".
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

type (
	traceKey   struct{}
	requestKey struct{}
)

var kept, lost atomic.Int64

func handle(n int) {
	ctx := context.WithValue(context.Background(), traceKey{}, fmt.Sprintf("%032x", n+1))

	var wg sync.WaitGroup
	wg.Add(2)
	go tag(ctx, n, &wg)    // want:spawn propagated
	go tagDetached(n, &wg) // want:spawn lost-at-spawn
	wg.Wait()
}

func tag(ctx context.Context, n int, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx = context.WithValue(ctx, requestKey{}, n)
	if ctx.Value(traceKey{}) != nil {
		kept.Add(1)
	}
}

func tagDetached(n int, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx := context.WithValue(context.Background(), requestKey{}, n) // want:site lost-at-spawn
	if ctx.Value(traceKey{}) == nil {
		lost.Add(1)
	}
}

func main() {
	const units = 30
	for n := range units {
		handle(n)
	}
	fmt.Printf("nocancel: units %d kept %d lost %d\n", units, kept.Load(), lost.Load())
}
