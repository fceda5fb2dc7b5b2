// Command slogsite is an OpenTelemetry-instrumented HTTP service and its
// keep-alive client, in one process, whose handler logs with log/slog in
// each way ctxwatch tells apart: with the request's context (the record
// carries the trace), without a context or with one rebuilt from
// Background (log-without-trace), at a disabled level (no record is
// written: nothing to judge), through logf, a wrapper of its own
// (--log-func main.logf), and from goroutines it starts. Between traced
// requests, on the same connection, an untraced one logs too, as does main
// outside any span: neither is inside a trace.
//
// With -key, the trace is a request id under a key of its own
// (--trace-key type=main.traceKey) instead of an OTel span. With
// OTEL_EXPORTER_OTLP_ENDPOINT set, it exports its spans over OTLP/HTTP. The program prints its own account: "slogsite: requests N
// health N".
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

var logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))

// logf is the program's own logging helper: its first context argument is
// the one its record is written with.
//
//go:noinline
func logf(ctx context.Context, format string, args ...any) {
	logger.InfoContext(ctx, fmt.Sprintf(format, args...)) // want:inner log-without-trace
}

func handle(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	slog.Info("handling")                                               // want:log without
	slog.InfoContext(ctx, "handling with the request")                  // want:log with
	logger.With("k", "v").InfoContext(context.Background(), "detached") // want:log without
	slog.Debug("not written: below the level")
	logf(ctx, "request %s", r.URL.Path)              // want:log with
	logf(context.Background(), "audit %s", r.Method) // want:log without
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // want:spawn propagated
		defer wg.Done()
		logger.InfoContext(ctx, "child keeps the request") // want:log with
	}()
	go func() { // want:spawn log-without-trace
		defer wg.Done()
		logger.LogAttrs(context.Background(), slog.LevelWarn, "child without it", slog.Int("n", 1)) // want:log without
	}()
	wg.Wait()
	fmt.Fprintln(w, "ok")
}

// traceKey keys a request id, the trace of the -key mode.
type traceKey struct{}

var requestIDs atomic.Int64

// withRequestID is the -key mode's middleware: the request's context
// carries a request id under traceKey.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := fmt.Sprintf("%032x", requestIDs.Add(1))
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), traceKey{}, id)))
	})
}

func health(w http.ResponseWriter, r *http.Request) {
	slog.Info("health") // no trace in scope: silent
	fmt.Fprintln(w, "ok")
}

func main() {
	slog.SetDefault(logger)
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSampler(sdktrace.AlwaysSample())}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		exp, err := otlptracehttp.New(context.Background())
		if err != nil {
			fmt.Fprintln(os.Stderr, "slogsite:", err)
			os.Exit(1)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	if len(os.Args) > 1 && os.Args[1] == "-key" {
		mux.Handle("/work", withRequestID(http.HandlerFunc(handle)))
	} else {
		mux.Handle("/work", otelhttp.NewHandler(http.HandlerFunc(handle), "work",
			otelhttp.WithSpanNameFormatter(func(op string, _ *http.Request) string { return op })))
	}
	mux.HandleFunc("/health", health)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)

	slog.Info("serving", "addr", ln.Addr().String()) // outside any trace: silent
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	const requests = 10
	for range requests {
		for _, path := range []string{"/work", "/health"} {
			resp, err := client.Get("http://" + ln.Addr().String() + path)
			if err != nil {
				fmt.Fprintln(os.Stderr, "slogsite:", err)
				os.Exit(1)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	srv.Shutdown(context.Background())
	if err := tp.Shutdown(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "slogsite:", err)
	}
	slog.Info("done") // outside any trace: silent
	fmt.Printf("slogsite: requests %d health %d\n", requests, requests)
}
