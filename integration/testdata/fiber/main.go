// Command fiber serves a fiber v2 app instrumented with otelfiber, and
// drives it with real HTTP requests over one keep-alive connection (half
// of them inside a client span, so they carry a traceparent). otelfiber
// puts its server span into the user context, c.UserContext(); fiber's
// c.Context() is the *fasthttp.RequestCtx, a context.Context whose Value
// looks only in the request's user values (fiber keeps the user context
// there under a string key, not as the span), so it never holds the span.
// Two routes start their span "work":
//   - /request on c.Context(), a common mistake: the SDK finds no parent
//     and starts a new root while otelfiber's server span is open, the
//     trace is dropped;
//   - /user on c.UserContext(): the same call makes a child of the server
//     span.
//
// ctxwatch should report dropped at /request's Start line, once per
// request to that route, and nothing for /user. *fasthttp.RequestCtx is
// not a context type ctxwatch can walk: the span the SDK made decides.
//
// The program's own truth: each handler compares its span's trace id with
// the server span's (read from c.UserContext(), and still recording) and
// counts new roots (dropped) and children. The last line is
// "fiber: requests N dropped N/2 children N/2".
//
// It is a module of its own, so that fiber stays out of ctxwatch's go.mod.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/gofiber/contrib/otelfiber/v2"
	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var (
	tracer            trace.Tracer
	dropped, children atomic.Int64
)

// onRequestCtx is the handler of /request: it starts its span on the
// *fasthttp.RequestCtx.
func onRequestCtx(c *fiber.Ctx) error {
	server := trace.SpanFromContext(c.UserContext())
	_, span := tracer.Start(c.Context(), "work") // want:site dropped
	defer span.End()
	count(server, span)
	return c.SendString("ok")
}

// onUserContext is the handler of /user: it starts its span on the user
// context, where otelfiber put the server span.
func onUserContext(c *fiber.Ctx) error {
	server := trace.SpanFromContext(c.UserContext())
	_, span := tracer.Start(c.UserContext(), "work")
	defer span.End()
	count(server, span)
	return c.SendString("ok")
}

func count(server, work trace.Span) {
	switch {
	case !server.IsRecording():
		panic("the server span is not recording at the handler's work")
	case work.SpanContext().TraceID() == server.SpanContext().TraceID():
		children.Add(1)
	default:
		dropped.Add(1)
	}
}

// serve starts an app with otelfiber on a loopback listener and returns
// its base URL and a func that stops it.
func serve(tp trace.TracerProvider) (string, func()) {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(otelfiber.Middleware(
		otelfiber.WithTracerProvider(tp),
		otelfiber.WithPropagators(propagation.TraceContext{})))
	app.Get("/request", onRequestCtx)
	app.Get("/user", onUserContext)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	return "http://" + ln.Addr().String(), func() {
		if err := app.Shutdown(); err != nil {
			panic(err)
		}
		if err := <-served; err != nil {
			panic(err)
		}
	}
}

// drive makes n requests to url with client, every other one inside a
// client span that it propagates.
func drive(client *http.Client, url string, n int) {
	prop := propagation.TraceContext{}
	for i := range n {
		ctx := context.Background()
		var span trace.Span
		if i%2 == 0 {
			ctx, span = tracer.Start(ctx, "client")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
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
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	tracer = tp.Tracer("github.com/ctxwatch/ctxwatch/integration/testdata/fiber")

	const perRoute = 10
	url, stop := serve(tp)
	// One keep-alive connection for all the requests.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	drive(client, url+"/request", perRoute)
	drive(client, url+"/user", perRoute)
	// fiber's Shutdown waits for open connections to close: close ours.
	client.CloseIdleConnections()
	stop()
	fmt.Printf("fiber: requests %d dropped %d children %d\n", 2*perRoute, dropped.Load(), children.Load())
}
