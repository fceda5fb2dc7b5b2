// Command childspans is an OpenTelemetry-instrumented HTTP service and its
// keep-alive client, in one process, whose handler does its work in steps,
// each in a span of its own started on the request's context and ended
// before the next one starts (more steps than the spans ctxwatch keeps per
// goroutine), then logs with log/slog, with the request's context and
// without it. The request's span is open all the while, so both records
// are inside its trace. Between traced requests, on the same connection,
// an untraced one logs too: it is inside no trace. The program prints its
// own account: "childspans: requests N health N".
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// steps is more than the four spans a goroutine's state keeps.
const steps = 6

var tracer = otel.Tracer("childspans")

func handle(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	for i := range steps {
		_, span := tracer.Start(ctx, fmt.Sprintf("step %d", i))
		span.End()
	}
	slog.InfoContext(ctx, "steps done")          // want:log with
	slog.Info("steps done, without the context") // want:log without
	fmt.Fprintln(w, "ok")
}

func health(w http.ResponseWriter, r *http.Request) {
	slog.Info("health") // no trace in scope: silent
	fmt.Fprintln(w, "ok")
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/work", otelhttp.NewHandler(http.HandlerFunc(handle), "work"))
	mux.HandleFunc("/health", health)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	const requests = 10
	for range requests {
		for _, path := range []string{"/work", "/health"} {
			resp, err := client.Get("http://" + ln.Addr().String() + path)
			if err != nil {
				fmt.Fprintln(os.Stderr, "childspans:", err)
				os.Exit(1)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	srv.Shutdown(context.Background())
	tp.Shutdown(context.Background())
	fmt.Printf("childspans: requests %d health %d\n", requests, requests)
}
