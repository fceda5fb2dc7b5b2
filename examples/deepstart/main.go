// Command deepstart shows a trace dropped far from where the mistake is:
// an otelhttp server (and its client, one keep-alive connection) whose
// handler calls loadProfile(context.Background()) instead of passing the
// request's context. loadProfile calls loadSettings, which calls query, a
// shared datastore helper that starts its span "query" on the context it
// is given: a new root, while the handler's server span is open. The
// handler also calls query correctly, through lookup(r.Context()): the same
// Start line then makes a child, no break.
//
// ctxwatch should report dropped at query's Start line, once per request,
// with the handler's loadProfile line in the break's stack (the user frames
// of the check, innermost first): the line where Background was taken.
//
// The program's own truth: query returns its span's trace id; the handler
// compares it with the server span's (still recording) and counts the
// queries that left the trace (dropped) and those that kept it (children).
// The last line is "deepstart: requests N dropped N children N".
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var (
	tracer            trace.Tracer
	dropped, children atomic.Int64
)

func handler(w http.ResponseWriter, r *http.Request) {
	server := trace.SpanFromContext(r.Context())
	want := server.SpanContext().TraceID()

	if got := lookup(r.Context()); got == want {
		children.Add(1)
	}
	if got := loadProfile(context.Background()); got != want && server.IsRecording() { // want:stack dropped
		dropped.Add(1)
	}
	fmt.Fprintln(w, "ok")
}

func lookup(ctx context.Context) trace.TraceID {
	return query(ctx, "SELECT name FROM items")
}

func loadProfile(ctx context.Context) trace.TraceID {
	return loadSettings(ctx, "profile")
}

func loadSettings(ctx context.Context, what string) trace.TraceID {
	return query(ctx, "SELECT * FROM settings WHERE kind = '"+what+"'")
}

// query is the datastore helper every part of the service calls.
func query(ctx context.Context, stmt string) trace.TraceID {
	_, span := tracer.Start(ctx, "query") // want:site dropped
	defer span.End()
	_ = stmt
	return span.SpanContext().TraceID()
}

func main() {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tracer = tp.Tracer("github.com/ctxwatch/ctxwatch/examples/deepstart")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: otelhttp.NewHandler(http.HandlerFunc(handler), "server")}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

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
	client.CloseIdleConnections()
	if err := srv.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	if err := <-served; err != http.ErrServerClosed {
		panic(err)
	}
	fmt.Printf("deepstart: requests %d dropped %d children %d\n", requests, dropped.Load(), children.Load())
}
