// Command collision shows two "libraries" that both store a trace id under
// the plain string key "trace_id" (the anti-pattern staticcheck's SA1029
// warns about). The second one silently overwrites the first's value.
//
// ctxwatch should report overwritten at requestTracer's WithValue line (the
// context already carries tenantLogger's trace), and the `go child` line as
// propagated: the child keeps the (new) trace it was handed.
//
// ctxwatch-flags: --trace-key string=trace_id
package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

var kept, overwritten atomic.Int64

// tenantLogger is the first library: it tags the context for its logs.
func tenantLogger(ctx context.Context, n int) context.Context {
	//lint:ignore SA1029 the collision is the point
	return context.WithValue(ctx, "trace_id", fmt.Sprintf("%032x", 2*n+1))
}

// requestTracer is the second library: it uses the same key for its own id.
func requestTracer(ctx context.Context, n int) context.Context {
	//lint:ignore SA1029 the collision is the point
	return context.WithValue(ctx, "trace_id", fmt.Sprintf("%032x", 2*n+2)) // want:site overwritten
}

func handle(ctx context.Context, n int) {
	ctx = tenantLogger(ctx, n)
	before := ctx.Value("trace_id")
	ctx = requestTracer(ctx, n)
	if ctx.Value("trace_id") != before {
		overwritten.Add(1)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go child(ctx, &wg) // want:spawn propagated
	wg.Wait()
}

func child(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value("trace_id") != nil {
		kept.Add(1)
	}
}

func main() {
	const requests = 20
	for i := range requests {
		handle(context.Background(), i)
	}
	fmt.Printf("collision: requests %d overwritten %d kept %d\n", requests, overwritten.Load(), kept.Load())
}
