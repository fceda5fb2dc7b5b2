// Command middleware runs an in-process net/http server with two middleware
// layers and drives it with one keep-alive client connection, so that all
// requests are served one after another by the same connection goroutine.
//
// withTrace puts the X-Trace-Id header's value under traceKey (if present).
// withUser is correct for /api (it derives from r.Context()); the /admin
// variant, withUserBroken, starts from context.Background() and so drops the
// trace. Requests alternate /api and /admin, with and without a trace header.
//
// ctxwatch should report: dropped at withUserBroken's WithValue line (only the
// traced /admin requests, 10 of them); the `go audit` line as propagated (the
// traced /api requests, 10 of them). Untraced requests that follow a traced
// one on the same connection must not be reported against its trace.
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

type (
	traceKey struct{}
	userKey  struct{}
)

var audited, dropped, conns atomic.Int64

func withTrace(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("X-Trace-Id"); id != "" {
			ctx := context.WithValue(r.Context(), traceKey{}, id)
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

func withUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), userKey{}, "alice")
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func withUserBroken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(context.Background(), userKey{}, "alice") // want:site dropped
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func apiHandler(w http.ResponseWriter, r *http.Request) {
	var wg sync.WaitGroup
	wg.Add(1)
	go audit(r.Context(), &wg) // want:spawn propagated
	wg.Wait()
	fmt.Fprintln(w, "ok")
}

func adminHandler(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Trace-Id") != "" && r.Context().Value(traceKey{}) == nil {
		dropped.Add(1) // the trace came in and is gone
	}
	fmt.Fprintln(w, "admin ok")
}

func audit(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if ctx.Value(traceKey{}) != nil {
		audited.Add(1)
	}
}

func main() {
	mux := http.NewServeMux()
	mux.Handle("/api/", withTrace(withUser(http.HandlerFunc(apiHandler))))
	mux.Handle("/admin/", withTrace(withUserBroken(http.HandlerFunc(adminHandler))))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{
		Handler: mux,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != http.ErrServerClosed {
			panic(err)
		}
	}()

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	base := "http://" + ln.Addr().String()
	const requests = 40
	traced := 0
	for i := range requests {
		path := "/api/items"
		if i%2 == 1 {
			path = "/admin/stats"
		}
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			panic(err)
		}
		if (i/2)%2 == 0 {
			req.Header.Set("X-Trace-Id", fmt.Sprintf("%032x", i+1))
			traced++
		}
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	client.CloseIdleConnections()
	if err := srv.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	<-served
	fmt.Printf("middleware: requests %d traced %d conns %d kept %d dropped %d\n",
		requests, traced, conns.Load(), audited.Load(), dropped.Load())
}
