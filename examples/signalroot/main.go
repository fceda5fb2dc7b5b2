// Command signalroot is a service whose root context comes from
// signal.NotifyContext (canceled on Ctrl-C), the usual way a service is
// rooted. os/signal's context type embeds context.Context as its first
// field. Each request derives its context from the root with its trace id
// under traceKey, and starts two goroutines: refresh keeps the request's
// context; prefetch is handed the service's root instead, which carries no
// trace.
//
// ctxwatch should report the `go refresh` line as propagated, and
// lost-at-spawn at the `go prefetch` line and prefetch's WithTimeout line:
// the walk from that timeout goes through the signal context to Background
// and finds no trace.
//
// The program's own truth: each goroutine reads the trace value back from
// the context it made (kept, or lost when there is none); it checks that
// the root was never canceled (it sends itself no signal). The last line is
// "signalroot: requests N kept N lost N canceled 0".
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"
)

type traceKey struct{}

var kept, lost atomic.Int64

func handle(root context.Context, n int) {
	ctx := context.WithValue(root, traceKey{}, fmt.Sprintf("%032x", n+1))

	var wg sync.WaitGroup
	wg.Add(2)
	go refresh(ctx, &wg)   // want:spawn propagated
	go prefetch(root, &wg) // want:spawn lost-at-spawn
	wg.Wait()
}

func refresh(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value(traceKey{}) != nil {
		kept.Add(1)
	}
}

func prefetch(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx, cancel := context.WithTimeout(ctx, time.Second) // want:site lost-at-spawn
	defer cancel()
	if ctx.Value(traceKey{}) == nil {
		lost.Add(1)
	}
}

func main() {
	root, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	const requests = 30
	for n := range requests {
		handle(root, n)
	}
	canceled := 0
	if root.Err() != nil {
		canceled = 1
	}
	fmt.Printf("signalroot: requests %d kept %d lost %d canceled %d\n",
		requests, kept.Load(), lost.Load(), canceled)
}
