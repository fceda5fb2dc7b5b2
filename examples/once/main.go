// Command once shows a lazy singleton: the first request starts a janitor
// goroutine under sync.Once. The janitor lives for the process; it sweeps
// after every tenth request, each time on a timeout of its own taken on
// context.Background(). It is not the first request's work: it inherits
// nothing from it. Every request also starts an audit goroutine that keeps
// the request's context.
//
// ctxwatch should report the `go audit` line as propagated for every
// request, and no break: the `go janitor` line (inside once.Do) gets no
// verdict, and its sweeps' WithTimeout line no lost-at-spawn.
//
// The program's own truth: audit counts the goroutines whose context
// carries the trace value (kept) or not (lost); the janitor counts the
// sweeps whose context carries no trace (so a lost-at-spawn would be
// reported there, were the janitor judged against the first request), and
// how many janitors ran. The last line is
// "once: requests N kept N lost 0 sweeps 3 janitors 1".
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

const (
	requests = 30
	every    = 10 // the janitor sweeps after every tenth request
)

var (
	once                         sync.Once
	janitorDone                  sync.WaitGroup
	served                       atomic.Int64
	kept, sweeps, janitors, lost atomic.Int64
)

func handle(n int) {
	ctx := context.WithValue(context.Background(), traceKey{}, fmt.Sprintf("%032x", n+1))
	once.Do(func() {
		janitorDone.Add(1)
		go janitor()
	})

	var wg sync.WaitGroup
	wg.Add(1)
	go audit(ctx, &wg) // want:spawn propagated
	wg.Wait()
	served.Add(1)
	time.Sleep(time.Millisecond)
}

func audit(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value(traceKey{}) != nil {
		kept.Add(1)
	} else {
		lost.Add(1)
	}
}

// janitor sweeps after every tenth request served, until all are.
func janitor() {
	defer janitorDone.Done()
	janitors.Add(1)
	for next := int64(every); next <= requests; next += every {
		for served.Load() < next {
			time.Sleep(time.Millisecond)
		}
		sweep()
	}
}

func sweep() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	purge(ctx)
	if ctx.Value(traceKey{}) == nil {
		sweeps.Add(1)
	}
}

// purge is the sweep's own work on its context.
func purge(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_ = ctx
}

func main() {
	for n := range requests {
		handle(n)
	}
	janitorDone.Wait()
	fmt.Printf("once: requests %d kept %d lost %d sweeps %d janitors %d\n",
		requests, kept.Load(), lost.Load(), sweeps.Load(), janitors.Load())
}
