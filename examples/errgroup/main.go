// Command errgroup shows goroutines started through golang.org/x/sync/errgroup.
// The first group is built with errgroup.WithContext and its function uses
// gctx (kept); the second is a zero Group whose function starts from
// context.Background() (lost).
//
// ctxwatch should report the g.Go line as propagated, and lost-at-spawn at
// the g2.Go line (the user's frame in the spawn stack) and at step2's
// WithCancel line.
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

type traceKey struct{}

var kept, lost atomic.Int64

func handle(ctx context.Context, n int) error {
	ctx = context.WithValue(ctx, traceKey{}, fmt.Sprintf("%032x", n+1))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return step(gctx) }) // want:spawn propagated

	var g2 errgroup.Group
	g2.Go(func() error { return step2(context.Background()) }) // want:spawn lost-at-spawn

	if err := g.Wait(); err != nil {
		return err
	}
	return g2.Wait()
}

func step(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value(traceKey{}) != nil {
		kept.Add(1)
	}
	return nil
}

func step2(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // want:site lost-at-spawn
	defer cancel()
	if ctx.Value(traceKey{}) == nil {
		lost.Add(1)
	}
	return nil
}

func main() {
	const traces = 30
	for i := range traces {
		if err := handle(context.Background(), i); err != nil {
			panic(err)
		}
	}
	fmt.Printf("errgroup: traces %d kept %d lost %d\n", traces, kept.Load(), lost.Load())
}
