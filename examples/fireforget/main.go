// Command fireforget shows fire-and-forget goroutines: an otelhttp server
// and its client in one process, over one keep-alive connection (half the
// requests inside a client span, so they carry a traceparent; half not, so
// the server starts their trace). The handler starts three goroutines and
// returns first: each goroutine waits on a gate that main opens only after
// the client has read the whole response. By then net/http has canceled
// the request's context and otelhttp has ended the server span, so every
// goroutine acts after its spawner's work is over.
//   - rootTask starts its span on context.Background(): a new root;
//   - the closure starts its span on the request's context it captured:
//     a child of the ended server span, same trace (kept);
//   - timerTask takes a timeout on context.Background(), waits on it and
//     returns, having done nothing with the trace (lost).
//
// ctxwatch should report: new-root at rootTask's Start line, spawned at the
// `go rootTask` line; the closure's `go` line kept at 100%; lost-at-spawn at
// the `go timerTask` line and timerTask's WithTimeout line (the goroutine
// ends having done nothing with the trace, so the break is known only when
// it ends); no break between requests on the same connection.
//
// The program's own truth: each goroutine compares the trace id of what it
// made with the request's (read by the handler from its server span) and
// counts kept, new roots and lost; it also checks, when it acts, that the
// request's context is canceled and the server span no longer recording
// (late), so the spawner had returned. The last line is
// "fireforget: requests N kept N new-root N lost N late N" with
// kept = new-root = lost = requests and late = 3 * requests.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var (
	kept, newRoots, lost, late atomic.Int64

	// gates holds, per request number, the channel main closes once the
	// client has read that request's response.
	gates sync.Map
	// tasks counts the goroutines still running.
	tasks sync.WaitGroup
)

func handler(tracer trace.Tracer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.Header.Get("X-Request"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g, _ := gates.Load(n)
		gate := g.(chan struct{})
		want := trace.SpanContextFromContext(r.Context()).TraceID()

		tasks.Add(3)
		go rootTask(tracer, gate, r.Context(), want) // want:spawn new-root

		go func() { // want:spawn propagated
			defer tasks.Done()
			<-gate
			checkLate(r.Context())
			_, span := tracer.Start(r.Context(), "followup")
			defer span.End()
			if span.SpanContext().TraceID() == want {
				kept.Add(1)
			}
		}()

		go timerTask(gate, r.Context()) // want:spawn lost-at-spawn
		fmt.Fprintln(w, "accepted")
	})
}

// checkLate counts a goroutine that acts after its request is over: the
// request's context canceled and the server span ended.
func checkLate(req context.Context) {
	if req.Err() != nil && !trace.SpanFromContext(req).IsRecording() {
		late.Add(1)
	}
}

func rootTask(tracer trace.Tracer, gate <-chan struct{}, req context.Context, want trace.TraceID) {
	defer tasks.Done()
	<-gate
	checkLate(req)
	_, span := tracer.Start(context.Background(), "rebuild-index") // want:site new-root
	defer span.End()
	if span.SpanContext().TraceID() != want {
		newRoots.Add(1)
	}
}

func timerTask(gate <-chan struct{}, req context.Context) {
	defer tasks.Done()
	<-gate
	checkLate(req)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond) // want:site lost-at-spawn
	defer cancel()
	<-ctx.Done()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		lost.Add(1)
	}
}

func main() {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tracer := tp.Tracer("github.com/ctxwatch/ctxwatch/examples/fireforget")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: otelhttp.NewHandler(handler(tracer), "server")}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	client := &http.Client{Transport: otelhttp.NewTransport(&http.Transport{MaxConnsPerHost: 1})}
	const requests = 20
	for i := range requests {
		gate := make(chan struct{})
		gates.Store(i, gate)
		ctx := context.Background()
		var span trace.Span
		if i%2 == 0 {
			ctx, span = tracer.Start(ctx, "client")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		if err != nil {
			panic(err)
		}
		req.Header.Set("X-Request", strconv.Itoa(i))
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if span != nil {
			span.End()
		}
		// The response is read: the handler has returned, and net/http
		// canceled the request's context before it wrote the response.
		close(gate)
	}
	tasks.Wait()
	client.CloseIdleConnections()
	if err := srv.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	if err := <-served; err != http.ErrServerClosed {
		panic(err)
	}
	fmt.Printf("fireforget: requests %d kept %d new-root %d lost %d late %d\n",
		requests, kept.Load(), newRoots.Load(), lost.Load(), late.Load())
}
