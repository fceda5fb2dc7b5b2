// Command otelhttp is a small OpenTelemetry-instrumented HTTP service and
// its client, in one process: the server uses otelhttp's handler, the
// client otelhttp's transport with W3C trace context propagation over one
// keep-alive connection. Half the requests are made inside a client span
// (they carry a traceparent header), half without (the server starts a new
// trace for each). The handler starts two goroutines: one keeps the
// request's context, one starts its span on context.Background().
//
// ctxwatch should report: new-root at the notify span (the trace splits),
// spawned at the `go notify` line; the `go audit` line kept at 100%; no
// break between requests on the same connection.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var kept, newRoots atomic.Int64

func handler(tracer trace.Tracer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := trace.SpanContextFromContext(r.Context()).TraceID()
		var wg sync.WaitGroup
		wg.Add(2)
		go audit(r.Context(), tracer, want, &wg) // want:spawn propagated
		go notify(tracer, want, &wg)             // want:spawn new-root
		wg.Wait()
		fmt.Fprintln(w, "ok")
	})
}

func audit(ctx context.Context, tracer trace.Tracer, want trace.TraceID, wg *sync.WaitGroup) {
	defer wg.Done()
	_, span := tracer.Start(ctx, "audit")
	defer span.End()
	if span.SpanContext().TraceID() == want {
		kept.Add(1)
	}
}

func notify(tracer trace.Tracer, want trace.TraceID, wg *sync.WaitGroup) {
	defer wg.Done()
	_, span := tracer.Start(context.Background(), "notify") // want:site new-root
	defer span.End()
	if span.SpanContext().TraceID() != want {
		newRoots.Add(1)
	}
}

func main() {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tracer := tp.Tracer("github.com/ctxwatch/ctxwatch/examples/otelhttp")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: otelhttp.NewHandler(handler(tracer), "server")}
	go srv.Serve(ln)

	client := &http.Client{Transport: otelhttp.NewTransport(&http.Transport{MaxConnsPerHost: 1})}
	const requests = 20
	for i := range requests {
		ctx := context.Background()
		var span trace.Span
		if i%2 == 0 {
			ctx, span = tracer.Start(ctx, "client")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		if err != nil {
			panic(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if span != nil {
			span.End()
		}
	}
	srv.Shutdown(context.Background())
	fmt.Printf("otelhttp: requests %d kept %d new-root %d\n", requests, kept.Load(), newRoots.Load())
}
