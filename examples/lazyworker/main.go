// Command lazyworker shows a worker goroutine started lazily by the first
// request that needs the service (not under sync.Once: a plain nil check in
// the traced handler), which then serves jobs from a channel for the rest
// of the process. Each job carries its own request's context, with its own
// trace. Requests alternate reads and writes; only writes queue a job, so
// the first request (a read) starts the worker and queues nothing: the
// worker's first act carries the second request's trace, not the first's.
// It is a new unit of work, not a lost trace. Every request also starts an
// audit goroutine that keeps its context.
//
// ctxwatch should report the `go audit` line as propagated for every
// request and no break: the `go w.run` line gets no lost-at-spawn or
// new-root, and no job is judged against the first request's trace.
//
// The program's own truth: audit counts the goroutines whose context
// carries their request's trace (kept) or not (lost); the worker counts the
// jobs whose context carries their own request's trace (matched), and
// records which request started it and whose trace its first job carried.
// The last line is
// "lazyworker: requests N kept N lost 0 jobs N/2 matched N/2 started-by 0 first-job 1".
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

type job struct {
	ctx  context.Context
	want string // the trace id of the request that queued it
	done chan struct{}
}

type worker struct {
	jobs      chan job
	startedBy int
	first     string // the trace of the first job served
	served    atomic.Int64
	matched   atomic.Int64
	stopped   sync.WaitGroup
}

var (
	w          *worker
	kept, lost atomic.Int64
)

func traceID(n int) string { return fmt.Sprintf("%032x", n+1) }

func handle(n int) {
	ctx := context.WithValue(context.Background(), traceKey{}, traceID(n))
	if w == nil {
		w = &worker{jobs: make(chan job), startedBy: n}
		w.stopped.Add(1)
		go w.run()
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go audit(ctx, &wg) // want:spawn propagated
	wg.Wait()

	if n%2 == 1 { // a write: its work goes to the worker
		j := job{ctx: ctx, want: traceID(n), done: make(chan struct{})}
		w.jobs <- j
		<-j.done
	}
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

func (w *worker) run() {
	defer w.stopped.Done()
	for j := range w.jobs {
		w.serve(j)
	}
}

func (w *worker) serve(j job) {
	defer close(j.done)
	ctx, cancel := context.WithCancel(j.ctx)
	defer cancel()
	got, _ := ctx.Value(traceKey{}).(string)
	if w.served.Add(1) == 1 {
		w.first = got
	}
	if got == j.want {
		w.matched.Add(1)
	}
}

func main() {
	const requests = 30
	for n := range requests {
		handle(n)
	}
	close(w.jobs)
	w.stopped.Wait()
	first := -1
	for n := range requests {
		if traceID(n) == w.first {
			first = n
		}
	}
	fmt.Printf("lazyworker: requests %d kept %d lost %d jobs %d matched %d started-by %d first-job %d\n",
		requests, kept.Load(), lost.Load(), w.served.Load(), w.matched.Load(), w.startedBy, first)
}
