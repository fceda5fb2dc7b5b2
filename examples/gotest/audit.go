// Package gotest shows ctxwatch as a CI gate: its test passes on its own,
// and fails under
//
//	go test -exec 'sudo ctxwatch --fail-on-break --trace-key type=github.com/ctxwatch/ctxwatch/examples/gotest.traceKey --' ./examples/gotest
//
// because Handle's audit goroutine loses the trace.
package gotest

import (
	"context"
	"sync"
	"sync/atomic"
)

type traceKey struct{}

// WithTrace returns ctx carrying trace id.
func WithTrace(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, traceKey{}, id)
}

// TraceOf returns the trace id ctx carries, or "".
func TraceOf(ctx context.Context) string {
	id, _ := ctx.Value(traceKey{}).(string)
	return id
}

// Handle does a unit of work and audits it in the background; audited
// counts the audits done.
func Handle(ctx context.Context, wg *sync.WaitGroup, audited *atomic.Int64) {
	wg.Add(1)
	go audit(context.Background(), wg, audited) // want:spawn lost-at-spawn
}

func audit(ctx context.Context, wg *sync.WaitGroup, audited *atomic.Int64) {
	defer wg.Done()
	audited.Add(1)
	ctx, cancel := context.WithCancel(ctx) // want:site lost-at-spawn
	defer cancel()
	_ = ctx
}
