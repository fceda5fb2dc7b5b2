// Command storm spawns many goroutines within one trace: every -lose'th one
// is started with context.Background() instead of the traced context.
//
// ctxwatch should count n spawns in total, n/lose of them lost: the `go kept`
// line propagated (n - n/lose times), lost-at-spawn at the `go lost` line and
// at lost's WithCancel line (n/lose times). Retention (lose-1)/lose.
// Run as: storm -n 20000 -lose 4
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

type traceKey struct{}

var (
	wg           sync.WaitGroup
	nKept, nLost atomic.Int64
)

func kept(ctx context.Context) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value(traceKey{}) != nil {
		nKept.Add(1)
	}
}

func lost(ctx context.Context) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(ctx) // want:site lost-at-spawn
	defer cancel()
	if ctx.Value(traceKey{}) == nil {
		nLost.Add(1)
	}
}

func main() {
	n := flag.Int("n", 20000, "goroutines to spawn")
	lose := flag.Int("lose", 4, "every lose'th goroutine loses the trace")
	flag.Parse()
	if *n <= 0 || *lose <= 0 || *n%*lose != 0 {
		fmt.Fprintln(os.Stderr, "storm: -n must be a positive multiple of -lose")
		os.Exit(2)
	}

	ctx := context.WithValue(context.Background(), traceKey{}, fmt.Sprintf("%032x", 1))
	for i := range *n {
		wg.Add(1)
		if i%*lose == *lose-1 {
			go lost(context.Background()) // want:spawn lost-at-spawn
		} else {
			go kept(ctx) // want:spawn propagated
		}
	}
	wg.Wait()
	fmt.Printf("spawned %d kept %d lost %d\n", *n, nKept.Load(), nLost.Load())
}
