// Command gin serves two gin engines instrumented with otelgin, and drives
// each with real HTTP requests over one keep-alive connection (half of them
// inside a client span, so they carry a traceparent). Both handlers start
// their span "work" on the *gin.Context itself, a common shortcut. gin's
// Context.Value consults the request's context (where otelgin put the
// server span) only when the engine sets ContextWithFallback:
//   - plain, without it: the SDK finds no parent and starts a new root
//     while otelgin's server span is open, the trace is dropped;
//   - fallback, with it: the same call makes a child of the server span.
//
// ctxwatch should report dropped at plain's Start line, once per request
// to that engine, and nothing for fallback. *gin.Context is not a context
// type ctxwatch can walk: the span the SDK made decides.
//
// The program's own truth: each handler compares its span's trace id with
// the server span's (read from the request's context, and still
// recording) and counts new roots (dropped) and children. The last line is
// "gin: requests N dropped N/2 children N/2".
//
// It is a module of its own, so that gin stays out of ctxwatch's go.mod.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var (
	tracer            trace.Tracer
	dropped, children atomic.Int64
)

// plain is the handler of the engine without ContextWithFallback.
func plain(c *gin.Context) {
	server := trace.SpanFromContext(c.Request.Context())
	_, span := tracer.Start(c, "work") // want:site dropped
	defer span.End()
	count(server, span)
	c.String(http.StatusOK, "ok")
}

// fallback is the handler of the engine with ContextWithFallback.
func fallback(c *gin.Context) {
	server := trace.SpanFromContext(c.Request.Context())
	_, span := tracer.Start(c, "work")
	defer span.End()
	count(server, span)
	c.String(http.StatusOK, "ok")
}

func count(server, work trace.Span) {
	switch {
	case !server.IsRecording():
		panic("the server span has ended before the handler's work")
	case work.SpanContext().TraceID() == server.SpanContext().TraceID():
		children.Add(1)
	default:
		dropped.Add(1)
	}
}

// serve starts an engine with otelgin on a loopback listener and returns
// its base URL and a func that stops it.
func serve(tp trace.TracerProvider, withFallback bool, h gin.HandlerFunc) (string, func()) {
	engine := gin.New()
	engine.ContextWithFallback = withFallback
	engine.Use(otelgin.Middleware("gin-example",
		otelgin.WithTracerProvider(tp),
		otelgin.WithPropagators(propagation.TraceContext{})))
	engine.GET("/work", h)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: engine}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			panic(err)
		}
		if err := <-served; err != http.ErrServerClosed {
			panic(err)
		}
	}
}

// drive makes n requests to url over one keep-alive connection, every
// other one inside a client span that it propagates.
func drive(url string, n int) {
	prop := propagation.TraceContext{}
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i := range n {
		ctx := context.Background()
		var span trace.Span
		if i%2 == 0 {
			ctx, span = tracer.Start(ctx, "client")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/work", nil)
		if err != nil {
			panic(err)
		}
		prop.Inject(ctx, propagation.HeaderCarrier(req.Header))
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			panic(resp.Status)
		}
		if span != nil {
			span.End()
		}
	}
}

func main() {
	gin.SetMode(gin.ReleaseMode)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	tracer = tp.Tracer("github.com/ctxwatch/ctxwatch/integration/testdata/gin")

	const perEngine = 10
	plainURL, stopPlain := serve(tp, false, plain)
	fallbackURL, stopFallback := serve(tp, true, fallback)
	drive(plainURL, perEngine)
	drive(fallbackURL, perEngine)
	stopPlain()
	stopFallback()
	fmt.Printf("gin: requests %d dropped %d children %d\n", 2*perEngine, dropped.Load(), children.Load())
}
