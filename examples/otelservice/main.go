// Command otelservice is an OpenTelemetry-instrumented HTTP service that
// exports its own spans over OTLP (OTEL_EXPORTER_OTLP_* variables; grpc or
// http/protobuf by OTEL_EXPORTER_OTLP_PROTOCOL), with its client in the
// same process: otelhttp handler and transport, W3C trace context, one
// keep-alive connection. Every other request is made inside a client span
// (it carries a traceparent); the others start their trace at the server.
// /kept starts a goroutine that continues the request's trace; /lost one
// that starts its span on context.Background(), an orphaned root.
//
// For each request it prints a JSON line with the ids a trace view shows:
// the request's trace and server span, and the span of the goroutine.
//
// ctxwatch should report new-root at the orphan's span, spawned at the
// `go orphan` line, once per /lost request, and nothing for /kept.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// line is what the service prints per request.
type line struct {
	Path        string `json:"path"`
	Traceparent bool   `json:"traceparent"`
	TraceID     string `json:"trace_id"`
	ServerSpan  string `json:"server_span"`
	WorkTrace   string `json:"work_trace"` // the goroutine's span
	WorkSpan    string `json:"work_span"`
}

func handler(tracer trace.Tracer, out *json.Encoder, mu *sync.Mutex) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := trace.SpanContextFromContext(r.Context())
		var work trace.SpanContext
		var wg sync.WaitGroup
		wg.Add(1)
		if r.URL.Path == "/lost" {
			go orphan(tracer, &work, &wg) // want:spawn new-root
		} else {
			go kept(r.Context(), tracer, &work, &wg) // want:spawn propagated
		}
		wg.Wait()
		mu.Lock()
		out.Encode(line{
			Path:        r.URL.Path,
			Traceparent: r.Header.Get("traceparent") != "",
			TraceID:     sc.TraceID().String(),
			ServerSpan:  sc.SpanID().String(),
			WorkTrace:   work.TraceID().String(),
			WorkSpan:    work.SpanID().String(),
		})
		mu.Unlock()
		fmt.Fprintln(w, "ok")
	})
}

func kept(ctx context.Context, tracer trace.Tracer, work *trace.SpanContext, wg *sync.WaitGroup) {
	defer wg.Done()
	_, span := tracer.Start(ctx, "kept")
	defer span.End()
	*work = span.SpanContext()
}

func orphan(tracer trace.Tracer, work *trace.SpanContext, wg *sync.WaitGroup) {
	defer wg.Done()
	_, span := tracer.Start(context.Background(), "orphan") // want:site new-root
	defer span.End()
	*work = span.SpanContext()
}

func exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc" {
		return otlptracegrpc.New(ctx)
	}
	return otlptracehttp.New(ctx)
}

func main() {
	ctx := context.Background()
	exp, err := exporter(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "otelservice:", err)
		os.Exit(1)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tracer := tp.Tracer("github.com/ctxwatch/ctxwatch/examples/otelservice")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "otelservice:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	srv := &http.Server{Handler: otelhttp.NewHandler(handler(tracer, json.NewEncoder(os.Stdout), &mu), "server")}
	go srv.Serve(ln)

	client := &http.Client{Transport: otelhttp.NewTransport(&http.Transport{MaxConnsPerHost: 1})}
	const requests = 16
	for i := range requests {
		// kept with traceparent, lost without, lost with, kept without.
		path := "/kept"
		if i%4 == 1 || i%4 == 2 {
			path = "/lost"
		}
		ctx := context.Background()
		var span trace.Span
		if i%2 == 0 {
			ctx, span = tracer.Start(ctx, "client")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+path, nil)
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
	srv.Shutdown(ctx)
	if err := tp.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "otelservice: export spans:", err)
		os.Exit(1)
	}
}
