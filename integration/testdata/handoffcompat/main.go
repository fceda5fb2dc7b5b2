// Command handoffcompat feeds worker pools through channels inside a trace
// kept under a key of its own (--trace-key type=main.traceKey), with the
// standard library alone, so that every Go release from 1.17 builds it
// (TestHandoffToolchains): each unit of work sets a trace id on a
// cancelable context, sends jobs to workers started outside any trace and
// waits for them. A worker's next act is a check of its job's context
// (kept) or a new context from Background (lost-at-handoff: with custom
// keys every check is work, and the first one carries no trace). The id
// worker, inside its own unit, sends the unit a result: the unit, inside
// its own (its context not canceled), keeps its trace. Workers in a
// multi-case select (a job's case and a quit case) are handed their job
// as a plain receiver is: waiting in the select, or taking the job from
// the buffer; a job with the unit's context there is kept. It prints
// "handoffcompat: requests N".
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

type traceKey struct{}

type job struct {
	ctx context.Context
	id  int
}

var (
	kept    = make(chan job, 4)
	ids     = make(chan int, 4)
	waiting = make(chan int)
	slow    = make(chan job)
	slowGo  = make(chan struct{}, 1)
	oneSlot = make(chan int, 1)
	oneGo   = make(chan struct{}, 1)
	ranged  = make(chan int, 4)
	multi   = make(chan int, 4)
	selBuf  = make(chan int, 4)
	selGo   = make(chan struct{}, 1)
	selKept = make(chan job, 4)
	quit    = make(chan struct{})
	done    = make(chan struct{}, 16)
	results = make(chan int)

	workers = []func(){keptWorker, idWorker, waitingWorker, slowWorker, oneSlotWorker, rangeWorker, multiWorker,
		selBufWorker, selKeptWorker}
)

// The counts the test checks need each send and receive to meet in the
// state its worker's comment names: a receive that overlaps its send can
// lose the hand-off (the probes read a channel before the runtime locks
// it). So the program waits for that state, read from its goroutines, not
// for a sleep: every worker parked before a unit's first send, the sender
// parked before a worker takes from it.

// waitFor polls ok until it holds; a stall ends the program.
func waitFor(what string, ok func() bool) {
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "handoffcompat: waited a minute for", what)
			os.Exit(1)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// goroutines returns runtime.Stack's account of every goroutine, a block
// each: a header "goroutine N [STATE...]:" and its frames.
func goroutines() []string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// state is a goroutine block's wait state ("chan receive", "select"):
// strings.Cut is newer than Go 1.17.
func state(g string) string {
	if i := strings.Index(g, "["); i >= 0 {
		g = g[i+1:]
	}
	if i := strings.IndexAny(g, "],"); i >= 0 {
		g = g[:i]
	}
	return g
}

// workersParked: each worker waits in a receive or a select.
func workersParked() bool {
	n := 0
	for _, g := range goroutines() {
		if !strings.Contains(g, "Worker(") {
			continue
		}
		if s := state(g); s != "chan receive" && s != "select" {
			return false
		}
		n++
	}
	return n == len(workers)
}

// senderParked: the unit waits in a send.
func senderParked() bool {
	for _, g := range goroutines() {
		if state(g) == "chan send" && strings.Contains(g, "main.unit(") {
			return true
		}
	}
	return false
}

// newTrace is a worker's new unit of work: a trace of its own, on a
// cancelable context. Its cancel ends the unit, as a span's End would:
// the worker's completion signal, sent after, hands nothing.
//
//go:noinline
func newTrace(id int) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background()) // want:recv lost-at-handoff
	_ = context.WithValue(ctx, traceKey{}, fmt.Sprintf("%032x", 1000+id))
	return cancel
}

func keptWorker() {
	for {
		j := <-kept
		_, cancel := context.WithTimeout(j.ctx, time.Second)
		cancel()
		done <- struct{}{}
	}
}

func idWorker() {
	for {
		cancel := newTrace(<-ids)
		results <- 1 // to the unit, inside its own: it keeps its trace
		cancel()
		done <- struct{}{}
	}
}

func waitingWorker() {
	for {
		newTrace(<-waiting)()
		done <- struct{}{}
	}
}

func slowWorker() {
	for {
		<-slowGo
		waitFor("the sender in sendq", senderParked)
		j := <-slow
		_, cancel := context.WithTimeout(j.ctx, time.Second)
		cancel()
		done <- struct{}{}
	}
}

func oneSlotWorker() {
	for {
		<-oneGo
		waitFor("the second sender on the full buffer", senderParked)
		for n := 0; n < 2; n++ {
			newTrace(<-oneSlot)()
			done <- struct{}{}
		}
	}
}

func rangeWorker() {
	for id := range ranged {
		newTrace(id)()
		done <- struct{}{}
	}
}

// multiWorker waits in its select: the send hands it the id.
func multiWorker() {
	for {
		select {
		case id := <-multi:
			newTrace(id)()
			done <- struct{}{}
		case <-quit:
			return
		}
	}
}

// selBufWorker's select comes after the id is in the buffer.
func selBufWorker() {
	for {
		<-selGo
		waitFor("the id in the buffer", func() bool { return len(selBuf) > 0 })
		select {
		case <-quit:
			return
		case id := <-selBuf:
			newTrace(id)()
			done <- struct{}{}
		}
	}
}

// selKeptWorker waits in its select for jobs with the unit's context.
func selKeptWorker() {
	for {
		select {
		case j := <-selKept:
			_, cancel := context.WithTimeout(j.ctx, time.Second)
			cancel()
			done <- struct{}{}
		case <-quit:
			return
		}
	}
}

func unit(i int) {
	waitFor("the workers in their receives", workersParked)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx = context.WithValue(ctx, traceKey{}, fmt.Sprintf("%032x", i+1))
	kept <- job{ctx: ctx} // want:send propagated 1
	ids <- i              // want:send lost-at-handoff 1
	waiting <- i          // want:send lost-at-handoff 1
	slowGo <- struct{}{}  // a signal: no element to hand
	slow <- job{ctx: ctx} // want:send propagated 1
	oneGo <- struct{}{}   // a signal: no element to hand
	for n := 0; n < 2; n++ {
		oneSlot <- i // want:send lost-at-handoff 2
	}
	ranged <- i // want:send lost-at-handoff 1
	select {
	case ids <- i: // want:send lost-at-handoff 1
	default:
		panic("ids' worker is behind")
	}
	multi <- i               // want:send lost-at-handoff 1
	selGo <- struct{}{}      // a signal: no element to hand
	selBuf <- i              // want:send lost-at-handoff 1
	selKept <- job{ctx: ctx} // want:send propagated 1
	for n := 0; n < 2; n++ {
		<-results
	}
	for n := 0; n < 11; n++ {
		<-done
	}
}

func main() {
	for _, w := range workers {
		go w()
	}
	// Outside any unit: nothing handed.
	multi <- -1
	selGo <- struct{}{}
	selBuf <- -2
	for n := 0; n < 2; n++ {
		<-done
	}
	const requests = 10
	for i := 0; i < requests; i++ {
		unit(i)
	}
	close(quit)
	fmt.Printf("handoffcompat: requests %d\n", requests)
}
