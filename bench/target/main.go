// Command target is the program bench runs untraced, under an empty uprobe
// and under ctxwatch. It times one operation in a loop and prints
// "ns/op <float>".
//
//	target -op withvalue|spawn|withvalue-traced|spawn-traced|slog|chan|select|units -n N
//
// withvalue calls context.WithValue N times outside any trace (ctxwatch's
// hot path: one map lookup); withvalue-traced does the same inside a trace
// (a main.traceKey value up the chain). spawn starts N goroutines outside a
// trace; spawn-traced starts them inside one, each calling WithCancel on the
// trace context so that its first check happens. Spawn times include
// waiting for every goroutine to finish. slog writes N log/slog records
// outside any trace, to a text handler that discards them (ctxwatch's log
// record probe: one map lookup, no event). chan sends N values on a
// buffered channel and receives each, outside any trace (ctxwatch's
// hand-off probes on runtime.chansend and chanrecv: one map lookup each).
// select does the same with each value received by a two-case select
// (runtime.selectgo: its entry probe and its RET's, single-stepped).
//
// units runs N units of work in a loop, as a worker does: each sets a new
// trace on a fresh context, starts a goroutine that checks the traced
// context once and then makes many checks on contexts of its own (not a
// break: its first check kept the trace), and makes many WithValue calls
// on the traced context itself. Every 10th unit also starts a slow
// goroutine that waits 200 ms, checks the traced context, then checks
// contexts of its own for two seconds: under a duty-cycled budget its first
// check often falls while the probes are out and the later ones after they
// are back (the stale-state trap). Nothing in it is a break, however the
// probes are sampled: the overhead budget's integration test runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// traceKey is the trace key bench passes to ctxwatch (type=main.traceKey).
type traceKey struct{}

// k is a key that holds no trace.
type k struct{}

const traceID = "0123456789abcdef0123456789abcdef"

func main() {
	op := flag.String("op", "withvalue", "operation: withvalue, spawn, withvalue-traced, spawn-traced, slog, chan, select or units")
	n := flag.Int("n", 100000, "number of operations")
	limit := flag.Duration("for", 0, "units: stop after this long even if fewer than N units ran")
	flag.Parse()
	if *n <= 0 {
		fmt.Fprintln(os.Stderr, "target: -n must be positive")
		os.Exit(2)
	}
	var d time.Duration
	switch *op {
	case "withvalue":
		d = withValue(context.Background(), *n)
	case "withvalue-traced":
		d = withValue(context.WithValue(context.Background(), traceKey{}, traceID), *n)
	case "spawn":
		d = spawn(*n)
	case "slog":
		d = logRecords(*n)
	case "chan":
		d = chanOps(*n)
	case "select":
		d = selectOps(*n)
	case "units":
		var done int
		d, done = units(*n, *limit)
		*n = done
	case "spawn-traced":
		d = spawnTraced(context.WithValue(context.Background(), traceKey{}, traceID), *n)
	default:
		fmt.Fprintf(os.Stderr, "target: unknown -op %q\n", *op)
		os.Exit(2)
	}
	fmt.Printf("ns/op %.2f\n", float64(d.Nanoseconds())/float64(*n))
}

// withValue times n calls of context.WithValue on ctx. Every call derives
// from ctx itself, so the chain a probe walks stays the same length; each
// result is kept so the calls cannot be optimised away.
func withValue(ctx context.Context, n int) time.Duration {
	var sink context.Context
	start := time.Now()
	for i := range n {
		sink = context.WithValue(ctx, k{}, i)
	}
	d := time.Since(start)
	if sink == nil {
		panic("no context")
	}
	return d
}

// logRecords times n log/slog records written (level enabled) outside any
// trace, to a handler that formats and discards them.
func logRecords(n int) time.Duration {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := time.Now()
	for i := range n {
		logger.Info("record", "i", i)
	}
	return time.Since(start)
}

// chanOps times n sends on a buffered channel, each received at once,
// outside any trace.
func chanOps(n int) time.Duration {
	c := make(chan int, 1)
	start := time.Now()
	for i := range n {
		c <- i
		<-c
	}
	return time.Since(start)
}

// selectOps times n sends on a buffered channel, each received at once
// by a select whose other case is never ready, outside any trace.
func selectOps(n int) time.Duration {
	c, never := make(chan int, 1), make(chan int)
	sum := 0
	start := time.Now()
	for i := range n {
		c <- i
		select {
		case v := <-c:
			sum += v
		case <-never:
		}
	}
	d := time.Since(start)
	if sum < 0 {
		panic("overflow")
	}
	return d
}

// spawn times starting n goroutines that do nothing, and waiting for them.
func spawn(n int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() { wg.Done() }()
	}
	wg.Wait()
	return time.Since(start)
}

// spawnTraced times starting n goroutines inside the trace of ctx, each
// checking the context it inherited once, and waiting for them.
func spawnTraced(ctx context.Context, n int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithCancel(ctx)
			cancel()
			_ = c
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// checksPerUnit is the number of context calls each goroutine of a unit
// makes after its first check.
const checksPerUnit = 50

// units times n units of work (see the package comment), or as many as
// run in limit when it is not 0, and prints how many there were.
func units(n int, limit time.Duration) (time.Duration, int) {
	var sink context.Context
	start := time.Now()
	done := 0
	var slow sync.WaitGroup
	for i := range n {
		if limit > 0 && i%64 == 0 && time.Since(start) > limit {
			break
		}
		done++
		ctx := context.WithValue(context.Background(), traceKey{}, fmt.Sprintf("%032x", i+1))
		if i%10 == 0 {
			slow.Go(func() {
				time.Sleep(200 * time.Millisecond)
				c, cancel := context.WithCancel(ctx) // propagated
				cancel()
				for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
					c, cancel = context.WithCancel(context.Background())
					cancel()
				}
				_ = c
			})
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, cancel := context.WithCancel(ctx) // propagated
			cancel()
			for range checksPerUnit {
				c, cancel = context.WithCancel(context.Background())
				cancel()
			}
			_ = c
		}()
		for j := range checksPerUnit {
			sink = context.WithValue(ctx, k{}, j)
		}
		<-done
	}
	slow.Wait()
	d := time.Since(start)
	if sink == nil {
		panic("no context")
	}
	fmt.Printf("units %d\n", done)
	return d, done
}
