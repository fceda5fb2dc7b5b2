package gotest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

// TestHandle is the service's own test: the request carries its trace and
// the audit runs, once. It passes; that the audit lost the trace on the
// way is what only ctxwatch sees (integration's TestGoTestExec).
func TestHandle(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	var wg sync.WaitGroup
	var audited atomic.Int64
	ctx := WithTrace(context.Background(), id)
	if got := TraceOf(ctx); got != id {
		t.Fatalf("request context carries trace %q, want %q", got, id)
	}
	Handle(ctx, &wg, &audited)
	wg.Wait()
	if n := audited.Load(); n != 1 {
		t.Errorf("%d audits done, want 1", n)
	}
}
