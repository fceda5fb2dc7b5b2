// Command keyvalue keeps its trace ids and its user ids under one named
// key type, told apart by the key's value: traceIDKey ("trace_id") is the
// trace key, userKey ("user") is not, and what it holds must never be read.
// Each request sets its trace, then a user id, then overwrites the user id
// (an impersonation: not a break, the key is not a trace key), and starts
// two goroutines: auditUser keeps the request's context, notify starts
// from context.Background() with a user id of its own. Every other request
// is then forwarded through a gateway that re-tags the context with a
// different trace id under the trace key.
//
// ctxwatch should report: the `go auditUser` line as propagated; the
// `go notify` line as lost-at-spawn, with notify's WithValue line as the
// site; overwritten at retag's WithValue line (once per forwarded
// request); nothing at the user id lines. No user id may appear in
// anything ctxwatch writes (integration's TestKeyValueSecret).
//
// The program's own truth: it reads back, through the key type, the values
// it set: kept and lost count the goroutines whose context carries a trace
// id or none; users counts the requests whose user id was replaced while
// the trace id stayed; overwritten counts the forwarded requests whose
// trace id changed. It prints no user id. The last line is
// "keyvalue: requests N kept N lost N users N overwritten N/2".
//
// ctxwatch-flags: --trace-key type=main.ctxKey,value=trace_id
package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

type ctxKey string

const (
	traceIDKey ctxKey = "trace_id"
	userKey    ctxKey = "user"
)

// The user ids are secrets of a kind: distinctive, so that a test can look
// for them in ctxwatch's output.
const (
	loggedIn     = "user-secret-4242"
	impersonated = "user-secret-9090"
	service      = "user-secret-1313"
)

var kept, lost, users, overwritten atomic.Int64

func handle(n int) {
	ctx := context.WithValue(context.Background(), traceIDKey, fmt.Sprintf("%032x", n+1))
	ctx = context.WithValue(ctx, userKey, loggedIn)
	ctx = context.WithValue(ctx, userKey, impersonated) // a sibling key: no break
	if ctx.Value(userKey) == impersonated && ctx.Value(traceIDKey) == fmt.Sprintf("%032x", n+1) {
		users.Add(1)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go auditUser(ctx, &wg) // want:spawn propagated
	go notify(&wg)         // want:spawn lost-at-spawn
	wg.Wait()

	if n%2 == 0 {
		forward(ctx, n)
	}
}

func auditUser(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Value(traceIDKey) != nil && ctx.Value(userKey) == impersonated {
		kept.Add(1)
	}
}

func notify(wg *sync.WaitGroup) {
	defer wg.Done()
	ctx := context.WithValue(context.Background(), userKey, service) // want:site lost-at-spawn
	if ctx.Value(traceIDKey) == nil {
		lost.Add(1)
	}
}

// forward hands the request to a gateway that tags it with a trace id of
// its own, replacing the request's.
func forward(ctx context.Context, n int) {
	before := ctx.Value(traceIDKey)
	ctx = retag(ctx, n)
	if after := ctx.Value(traceIDKey); after != nil && after != before {
		overwritten.Add(1)
	}
}

func retag(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, traceIDKey, fmt.Sprintf("9a7e%028x", n+1)) // want:site overwritten
}

func main() {
	const requests = 20
	for n := range requests {
		handle(n)
	}
	fmt.Printf("keyvalue: requests %d kept %d lost %d users %d overwritten %d\n",
		requests, kept.Load(), lost.Load(), users.Load(), overwritten.Load())
}
