// Command service is the HTTP service bench loads: a handler with
// realistic work (decode a JSON body, hash it, encode a JSON answer), a few
// context calls and one goroutine per request.
//
//	service -addr 127.0.0.1:0
//
// It prints "listening ADDR" once it accepts connections and serves until
// SIGINT or SIGTERM. A middleware puts the request's trace id (header
// X-Trace-Id) under main.traceKey. The handler derives a deadline context
// and starts an audit goroutine with it; every 10th request the audit
// goroutine is started with context.Background() instead (a break:
// lost-at-spawn at the go statement in handle).
//
// ctxwatch-flags: --trace-key type=main.traceKey
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

type traceKey struct{}

type userKey struct{}

type item struct {
	ID    int     `json:"id"`
	Name  string  `json:"name"`
	Price float64 `json:"price"`
}

type order struct {
	Customer string `json:"customer"`
	Items    []item `json:"items"`
}

type answer struct {
	Customer string  `json:"customer"`
	Total    float64 `json:"total"`
	Digest   string  `json:"digest"`
	Trace    string  `json:"trace"`
}

var (
	requests atomic.Int64
	audited  atomic.Int64
)

func withTrace(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if id := r.Header.Get("X-Trace-Id"); id != "" {
			ctx = context.WithValue(ctx, traceKey{}, id)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func handle(w http.ResponseWriter, r *http.Request) {
	n := requests.Add(1)
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var o order
	if err := json.NewDecoder(r.Body).Decode(&o); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx = context.WithValue(ctx, userKey{}, o.Customer)
	var total float64
	h := sha256.New()
	for _, it := range o.Items {
		total += it.Price
		fmt.Fprintf(h, "%d:%s:%g;", it.ID, it.Name, it.Price)
	}
	done := make(chan struct{})
	actx := ctx
	if n%10 == 0 {
		actx = context.Background() // the bug: the audit leaves the trace
	}
	go audit(actx, done)
	trace, _ := ctx.Value(traceKey{}).(string)
	a := answer{Customer: o.Customer, Total: total, Digest: hex.EncodeToString(h.Sum(nil)), Trace: trace}
	<-done
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(a); err != nil {
		log.Print(err)
	}
}

// audit records the request; its first context call is the check that
// shows whether it kept the trace.
func audit(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ctx.Err() == nil {
		audited.Add(1)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /order", handle)
	srv := &http.Server{Handler: withTrace(mux), ReadHeaderTimeout: 5 * time.Second}
	fmt.Printf("listening %s\n", ln.Addr())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	fmt.Printf("requests %d audited %d\n", requests.Load(), audited.Load())
}
