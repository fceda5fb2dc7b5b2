// Package event defines the records ctxwatch's probes send to the agent and
// decodes them in place from ring buffer samples, without reflection.
package event

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Kind says what a probe saw.
type Kind uint8

const (
	// Spawn: a goroutine with a trace in scope started another.
	Spawn Kind = 1
	// FirstCheck: a goroutine that inherited a trace made its first check
	// with user code on the stack.
	FirstCheck Kind = 2
	// Dropped: a goroutine that owns a trace in scope checked with a context
	// carrying none (or started an unrelated root span).
	Dropped Kind = 3
	// Overwritten: WithValue put a different trace under the same key.
	Overwritten Kind = 4
	// StaleParent: the tracer started a span on a context whose span this
	// goroutine started and has ended. Trace is the ended parent (its span
	// id in Trace.Span), Other the span just started.
	StaleParent Kind = 5
	// Log: a goroutine with a trace in scope wrote a log record (log/slog,
	// or a --log-func call). Outcome: Propagated (the record's context
	// carries the trace), Lost (it carries none), Other (another trace, in
	// Other, or a context the probes cannot walk, Other invalid).
	Log Kind = 6
	// Handoff: a goroutine received, in user code, a channel element that
	// a goroutine with a trace in scope sent from user code; it inherits
	// the trace for its next trace-bearing act, as a spawned child does.
	// Parent is the sender, PC the send's return address, Stack the
	// send's stack (the user's send line first).
	Handoff Kind = 7
)

func (k Kind) String() string {
	switch k {
	case Spawn:
		return "spawn"
	case FirstCheck:
		return "first-check"
	case Dropped:
		return "dropped"
	case Overwritten:
		return "overwritten"
	case StaleParent:
		return "stale-parent"
	case Log:
		return "log"
	case Handoff:
		return "handoff"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Outcome is what a FirstCheck found.
type Outcome uint8

const (
	Propagated Outcome = 1 // the context carries the inherited trace
	Lost       Outcome = 2 // the context carries no trace
	NewRoot    Outcome = 3 // a new trace was set on a context without the inherited one
	Other      Outcome = 4 // the context carries a trace it did not inherit
	// Traceless: an incidental check (WithCancel, WithTimeout, WithValue
	// with another key) without the inherited OTel trace. Not a verdict:
	// the goroutine's trace-bearing work decides, or its end.
	Traceless Outcome = 5
)

// StackDepth is the number of frames a probe captures.
const StackDepth = 16

// TraceLen is the number of bytes of a trace value the probes keep.
const TraceLen = 32

// Trace identifies a trace as the probes saw it.
type Trace struct {
	ID   [TraceLen]byte // OTel: 16-byte trace id; user keys: the value's bytes
	Span [8]byte        // OTel: the span that was current
	Len  uint8          // meaningful bytes of ID; 0 means no trace
	Key  uint8          // 0: the OTel span key; i+1: the i-th --trace-key
	Root bool           // OTel: the span has no parent
}

// Valid reports whether t names a trace.
func (t Trace) Valid() bool { return t.Len > 0 }

// Bytes returns the meaningful bytes of the trace value.
func (t *Trace) Bytes() []byte { return t.ID[:min(int(t.Len), TraceLen)] }

// Event is one record from the probes. Times are CLOCK_MONOTONIC
// nanoseconds (bpf_ktime_get_ns).
type Event struct {
	Time      uint64
	Goroutine uint64
	Parent    uint64 // Spawn: the spawning goroutine; Handoff: the sender
	PC        uint64 // Spawn: the go statement's return address; Handoff: the send's; checks: the probed function; Log: the probed instruction
	SpawnTime uint64 // checks of an inheriting goroutine: when it was spawned
	PID       uint32
	Kind      Kind
	Outcome   Outcome
	Trace     Trace // the trace in scope
	Other     Trace // the new, dropped-to or overwriting trace; StaleParent: the new span
	NStack    int
	Stack     [StackDepth]uint64 // return addresses, innermost first
}

// Frames returns the captured return addresses.
func (e *Event) Frames() []uint64 { return e.Stack[:e.NStack] }

// Size is the size of a record in bytes; the layout of struct event in
// bpf/ctxwatch.c, checked against the object's BTF by internal/uprobe's tests.
const Size = 48 + 2*traceSize + StackDepth*8

const traceSize = TraceLen + 8 + 8

// ErrShort means a sample was smaller than a record.
var ErrShort = errors.New("short event record")

// Decode fills e from a raw sample.
func Decode(raw []byte, e *Event) error {
	if len(raw) < Size {
		return fmt.Errorf("decode event of %d bytes: %w", len(raw), ErrShort)
	}
	le := binary.LittleEndian
	e.Time = le.Uint64(raw[0:])
	e.Goroutine = le.Uint64(raw[8:])
	e.Parent = le.Uint64(raw[16:])
	e.PC = le.Uint64(raw[24:])
	e.SpawnTime = le.Uint64(raw[32:])
	e.PID = le.Uint32(raw[40:])
	e.Kind = Kind(raw[44])
	e.Outcome = Outcome(raw[45])
	e.NStack = min(int(raw[46]), StackDepth)
	decodeTrace(raw[48:], &e.Trace)
	decodeTrace(raw[48+traceSize:], &e.Other)
	st := raw[48+2*traceSize:]
	for i := range e.NStack {
		e.Stack[i] = le.Uint64(st[i*8:])
	}
	return nil
}

func decodeTrace(b []byte, t *Trace) {
	copy(t.ID[:], b[:TraceLen])
	copy(t.Span[:], b[TraceLen:TraceLen+8])
	t.Len = min(b[TraceLen+8], TraceLen)
	t.Key = b[TraceLen+9]
	t.Root = b[TraceLen+10] != 0
}

// TraceID returns the 16-byte trace id a trace maps to: the OTel trace id,
// a user value of 32 hex digits (a W3C trace id) decoded, or else a hash of
// the value, so that every trace can be exported.
func (t *Trace) TraceID() [16]byte {
	var id [16]byte
	b := t.Bytes()
	if t.Key == 0 && len(b) == 16 {
		copy(id[:], b)
		return id
	}
	if len(b) == 32 {
		if _, err := hex.Decode(id[:], b); err == nil {
			return id
		}
	}
	// FNV-1a, 128 bits folded from two 64-bit lanes with different seeds.
	h1, h2 := uint64(14695981039346656037), uint64(1099511628211^0x9e3779b97f4a7c15)
	for _, c := range b {
		h1 = (h1 ^ uint64(c)) * 1099511628211
		h2 = (h2 ^ uint64(c)) * 1099511628211
		h2 ^= h2 >> 29
	}
	binary.BigEndian.PutUint64(id[:8], h1)
	binary.BigEndian.PutUint64(id[8:], h2)
	return id
}

// Label is the trace as a user would write it: the hex trace id for OTel,
// the value's text for user keys.
func (t *Trace) Label() string {
	if !t.Valid() {
		return ""
	}
	if t.Key == 0 {
		return hex.EncodeToString(t.Bytes())
	}
	b := t.Bytes()
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return hex.EncodeToString(b)
		}
	}
	return string(b)
}
