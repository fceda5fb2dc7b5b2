package analysis_test

import (
	"encoding/binary"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/event"
)

// encode writes e as the kernel side lays out struct event (the inverse of
// event.Decode), so that the test below decodes as the agent does.
func encode(e *event.Event, raw []byte) {
	le := binary.LittleEndian
	le.PutUint64(raw[0:], e.Time)
	le.PutUint64(raw[8:], e.Goroutine)
	le.PutUint64(raw[16:], e.Parent)
	le.PutUint64(raw[24:], e.PC)
	le.PutUint64(raw[32:], e.SpawnTime)
	le.PutUint32(raw[40:], e.PID)
	raw[44] = byte(e.Kind)
	raw[45] = byte(e.Outcome)
	raw[46] = byte(e.NStack)
	const traceSize = event.TraceLen + 16
	for i, t := range []event.Trace{e.Trace, e.Other} {
		b := raw[48+i*traceSize:]
		copy(b, t.ID[:])
		copy(b[event.TraceLen:], t.Span[:])
		b[event.TraceLen+8] = t.Len
	}
	st := raw[48+2*traceSize:]
	for i := range e.NStack {
		le.PutUint64(st[i*8:], e.Stack[i])
	}
}

// TestSteadyStateAllocs: decoding and analysing a propagated spawn and its
// first check, the agent's commonest pair of events, allocates nothing once
// the spawn site's stacks are resolved (the resolver's answers are cached).
func TestSteadyStateAllocs(t *testing.T) {
	a := newAnalyzer(0)
	sp := spawn(1, 0, 7, retGoHandle, retServe)
	fc := firstCheck(2, 0, event.Propagated, retAuditFunc)
	rawSpawn, rawCheck := make([]byte, event.Size), make([]byte, event.Size)
	var ev event.Event
	g := uint64(100)
	pair := func() {
		g++
		sp.Goroutine, fc.Goroutine = g, g
		encode(sp, rawSpawn)
		encode(fc, rawCheck)
		for _, raw := range [][]byte{rawSpawn, rawCheck} {
			if err := event.Decode(raw, &ev); err != nil {
				t.Fatal(err)
			}
			if b, ok := a.Handle(&ev); ok {
				t.Fatalf("unexpected break %+v", b)
			}
		}
	}
	for range 10000 { // warm up: caches filled, maps grown
		pair()
	}
	allocs := testing.AllocsPerRun(10000, pair)
	t.Logf("%.2f allocations per spawn + first check", allocs)
	if allocs > 0.01 {
		t.Errorf("%.2f allocations per propagated spawn + first check, want 0", allocs)
	}
	s := a.Snapshot()
	if len(s.SpawnSites) != 1 || s.SpawnSites[0].Propagated != 10000+10001 {
		t.Errorf("spawn sites %+v, want one with every spawn propagated", s.SpawnSites)
	}
}
