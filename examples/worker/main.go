// Command worker shows the scope rule: a long-lived worker goroutine,
// started outside any trace, takes job after job from a channel and starts a
// new trace for each one. Setting the next job's trace is a new unit of work,
// not a break.
//
// ctxwatch should report the `go flush` line as propagated for every job and
// no break; the `go worker` line is not traced and gets no verdict.
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
	id string
}

var flushed atomic.Int64

func worker(jobs <-chan job, wg *sync.WaitGroup) {
	defer wg.Done()
	for j := range jobs {
		ctx := context.WithValue(context.Background(), traceKey{}, j.id)

		done := make(chan struct{})
		go flush(ctx, done) // want:spawn propagated
		<-done
	}
}

func flush(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value(traceKey{}) != nil {
		flushed.Add(1)
	}
}

func main() {
	jobs := make(chan job)
	var wg sync.WaitGroup
	wg.Add(1)
	go worker(jobs, &wg)

	const n = 50
	for i := range n {
		jobs <- job{id: fmt.Sprintf("%032x", i+1)}
	}
	close(jobs)
	wg.Wait()
	fmt.Printf("worker: jobs %d kept %d\n", n, flushed.Load())
}
