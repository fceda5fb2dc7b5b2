// Command target is the program bench runs untraced, under an empty uprobe
// and under ctxwatch. It times one operation in a loop and prints
// "ns/op <float>".
//
//	target -op withvalue|spawn|withvalue-traced|spawn-traced -n N
//
// withvalue calls context.WithValue N times outside any trace (ctxwatch's
// hot path: one map lookup); withvalue-traced does the same inside a trace
// (a main.traceKey value up the chain). spawn starts N goroutines outside a
// trace; spawn-traced starts them inside one, each calling WithCancel on the
// trace context so that its first check happens. Spawn times include
// waiting for every goroutine to finish.
package main

import (
	"context"
	"flag"
	"fmt"
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
	op := flag.String("op", "withvalue", "operation: withvalue, spawn, withvalue-traced or spawn-traced")
	n := flag.Int("n", 100000, "number of operations")
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
