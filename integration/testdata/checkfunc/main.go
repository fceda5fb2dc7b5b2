// Command checkfunc makes no context call in its goroutines except through
// process, a function of its own: ctxwatch judges them only when told that
// process is a check (--check-func main.process).
package main

import (
	"context"
	"fmt"
	"sync"
)

type traceKey struct{}

// process takes the context it works under.
//
//go:noinline
func process(ctx context.Context, n int) int {
	if ctx.Value(traceKey{}) != nil {
		return n
	}
	return -n
}

func handle(n int, kept, lost *int) {
	ctx := context.WithValue(context.Background(), traceKey{}, fmt.Sprintf("%032x", n+1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(2)
	go func() { // want:spawn propagated
		defer wg.Done()
		if process(ctx, n) >= 0 {
			mu.Lock()
			*kept++
			mu.Unlock()
		}
	}()
	go func() { // want:spawn lost-at-spawn
		defer wg.Done()
		if process(context.Background(), n) < 0 { // want:site lost-at-spawn
			mu.Lock()
			*lost++
			mu.Unlock()
		}
	}()
	wg.Wait()
}

func main() {
	kept, lost := 0, 0
	for i := range 20 {
		handle(i+1, &kept, &lost)
	}
	fmt.Printf("checkfunc: kept %d lost %d\n", kept, lost)
}
