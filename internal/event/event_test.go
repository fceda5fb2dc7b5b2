package event_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/event"
)

// record builds a struct event as the kernel side writes it, through the
// bpf2go-generated type, with every field distinct.
func record(t *testing.T) (bpf.CtxwatchEvent, []byte) {
	t.Helper()
	var ev bpf.CtxwatchEvent
	ev.KtimeNs = 0x1111111111111101
	ev.Goid = 0x2222222222222202
	ev.ParentGoid = 0x3333333333333303
	ev.Pc = 0x4444444444444404
	ev.SpawnNs = 0x5555555555555505
	ev.Tgid = 0x66666606
	ev.Type = uint8(event.FirstCheck)
	ev.Outcome = uint8(event.NewRoot)
	ev.Nstack = 5
	ev.Pad = 0xEE
	for i := range ev.T.Id {
		ev.T.Id[i] = byte(0x10 + i)
		ev.Other.Id[i] = byte(0x80 + i)
	}
	for i := range ev.T.Span {
		ev.T.Span[i] = byte(0x50 + i)
		ev.Other.Span[i] = byte(0xC0 + i)
	}
	ev.T.Len = 16
	ev.T.Key = 0
	ev.T.Root = 1
	ev.T.Pad = [5]uint8{0xAA, 0xAA, 0xAA, 0xAA, 0xAA}
	ev.Other.Len = 7
	ev.Other.Key = 3
	ev.Other.Root = 0
	ev.Other.Pad = [5]uint8{0xBB, 0xBB, 0xBB, 0xBB, 0xBB}
	for i := range ev.Stack {
		ev.Stack[i] = 0x00C0FFEE00000000 + uint64(i)*0x101
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &ev); err != nil {
		t.Fatalf("binary.Write: %v", err)
	}
	return ev, buf.Bytes()
}

func TestSizeMatchesGenerated(t *testing.T) {
	if got := binary.Size(bpf.CtxwatchEvent{}); event.Size != got {
		t.Fatalf("event.Size = %d, binary.Size(bpf.CtxwatchEvent{}) = %d", event.Size, got)
	}
}

func TestDecodeGenerated(t *testing.T) {
	ev, raw := record(t)
	if len(raw) != event.Size {
		t.Fatalf("encoded record is %d bytes, event.Size is %d", len(raw), event.Size)
	}
	var e event.Event
	if err := event.Decode(raw, &e); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if e.Time != ev.KtimeNs {
		t.Errorf("Time = %#x, want %#x", e.Time, ev.KtimeNs)
	}
	if e.Goroutine != ev.Goid {
		t.Errorf("Goroutine = %#x, want %#x", e.Goroutine, ev.Goid)
	}
	if e.Parent != ev.ParentGoid {
		t.Errorf("Parent = %#x, want %#x", e.Parent, ev.ParentGoid)
	}
	if e.PC != ev.Pc {
		t.Errorf("PC = %#x, want %#x", e.PC, ev.Pc)
	}
	if e.SpawnTime != ev.SpawnNs {
		t.Errorf("SpawnTime = %#x, want %#x", e.SpawnTime, ev.SpawnNs)
	}
	if e.PID != ev.Tgid {
		t.Errorf("PID = %#x, want %#x", e.PID, ev.Tgid)
	}
	if e.Kind != event.FirstCheck {
		t.Errorf("Kind = %v, want %v", e.Kind, event.FirstCheck)
	}
	if e.Outcome != event.NewRoot {
		t.Errorf("Outcome = %d, want %d", e.Outcome, event.NewRoot)
	}
	if e.NStack != 5 {
		t.Errorf("NStack = %d, want 5", e.NStack)
	}
	if e.Trace.ID != ev.T.Id {
		t.Errorf("Trace.ID = %x, want %x", e.Trace.ID, ev.T.Id)
	}
	if e.Trace.Span != ev.T.Span {
		t.Errorf("Trace.Span = %x, want %x", e.Trace.Span, ev.T.Span)
	}
	if e.Trace.Len != 16 || e.Trace.Key != 0 || !e.Trace.Root {
		t.Errorf("Trace Len/Key/Root = %d/%d/%v, want 16/0/true", e.Trace.Len, e.Trace.Key, e.Trace.Root)
	}
	if e.Other.ID != ev.Other.Id {
		t.Errorf("Other.ID = %x, want %x", e.Other.ID, ev.Other.Id)
	}
	if e.Other.Span != ev.Other.Span {
		t.Errorf("Other.Span = %x, want %x", e.Other.Span, ev.Other.Span)
	}
	if e.Other.Len != 7 || e.Other.Key != 3 || e.Other.Root {
		t.Errorf("Other Len/Key/Root = %d/%d/%v, want 7/3/false", e.Other.Len, e.Other.Key, e.Other.Root)
	}
	if got, want := e.Frames(), ev.Stack[:5]; !equalU64(got, want) {
		t.Errorf("Frames() = %#x, want %#x", got, want)
	}
	for i := 5; i < event.StackDepth; i++ {
		if e.Stack[i] != 0 {
			t.Errorf("Stack[%d] = %#x beyond NStack, want 0", i, e.Stack[i])
		}
	}
}

func TestDecodeFullStackAndClamp(t *testing.T) {
	ev, raw := record(t)
	raw[46] = event.StackDepth
	var e event.Event
	if err := event.Decode(raw, &e); err != nil {
		t.Fatal(err)
	}
	if !equalU64(e.Frames(), ev.Stack[:]) {
		t.Errorf("Frames() = %#x, want %#x", e.Frames(), ev.Stack)
	}
	// A corrupt depth must not index past the stack.
	raw[46] = 200
	raw[48+40] = 200 // trace len beyond TraceLen
	if err := event.Decode(raw, &e); err != nil {
		t.Fatal(err)
	}
	if e.NStack != event.StackDepth {
		t.Errorf("NStack = %d for depth 200, want %d", e.NStack, event.StackDepth)
	}
	if e.Trace.Len != event.TraceLen || len(e.Trace.Bytes()) != event.TraceLen {
		t.Errorf("Trace.Len = %d for len 200, want %d", e.Trace.Len, event.TraceLen)
	}
}

func TestDecodeShort(t *testing.T) {
	_, raw := record(t)
	for _, n := range []int{0, 1, event.Size - 1} {
		var e event.Event
		err := event.Decode(raw[:n], &e)
		if !errors.Is(err, event.ErrShort) {
			t.Errorf("Decode(%d bytes) = %v, want error wrapping ErrShort", n, err)
		}
	}
	// Ring buffer samples are padded to 8 bytes: a longer sample is fine.
	var e event.Event
	if err := event.Decode(append(raw, 0, 0, 0, 0, 0, 0, 0, 0), &e); err != nil {
		t.Errorf("Decode(%d bytes) = %v, want nil", len(raw)+8, err)
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func userTrace(key uint8, v string) event.Trace {
	var t event.Trace
	t.Key = key
	t.Len = uint8(copy(t.ID[:], v))
	return t
}

func TestTraceIDOTel(t *testing.T) {
	want, _ := hex.DecodeString("4bf92f3577b34da6a3ce929d0e0e4736")
	var tr event.Trace
	copy(tr.ID[:], want)
	// Bytes past Len must not leak into the id.
	tr.ID[16], tr.ID[31] = 0xFF, 0xFF
	tr.Len = 16
	tr.Key = 0
	id := tr.TraceID()
	if !bytes.Equal(id[:], want) {
		t.Errorf("TraceID() = %x, want %x", id, want)
	}
	if got := tr.Label(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("Label() = %q, want the hex trace id", got)
	}
}

func TestTraceIDUserHex(t *testing.T) {
	const w3c = "4bf92f3577b34da6a3ce929d0e0e4736"
	want, _ := hex.DecodeString(w3c)
	tr := userTrace(1, w3c)
	id := tr.TraceID()
	if !bytes.Equal(id[:], want) {
		t.Errorf("TraceID() of %q = %x, want %x", w3c, id, want)
	}
	if got := tr.Label(); got != w3c {
		t.Errorf("Label() = %q, want %q", got, w3c)
	}
}

func TestTraceIDUserHashed(t *testing.T) {
	values := []string{
		"req-42",
		"req-43",
		"a",
		"b",
		"4bf92f3577b34da6a3ce929d0e0e473",  // 31 hex digits
		"4bf92f3577b34da6a3ce929d0e0e473z", // 32 characters, not hex
		"xbf92f3577b34da6a3ce929d0e0e4736", // 32 characters, not hex at the start
		"0123456789abcdef",                 // 16 bytes under a user key: not an OTel id
	}
	seen := map[[16]byte]string{}
	for _, v := range values {
		tr := userTrace(2, v)
		id := tr.TraceID()
		if id == ([16]byte{}) {
			t.Errorf("TraceID() of %q is zero", v)
		}
		if string(id[:8]) == string(id[8:]) {
			t.Errorf("TraceID() of %q = %x: both halves equal, 64 bits of id", v, id)
		}
		again := userTrace(2, v)
		if id2 := again.TraceID(); id2 != id {
			t.Errorf("TraceID() of %q not stable: %x then %x", v, id, id2)
		}
		// The bytes past Len are not part of the value.
		junk := userTrace(2, v)
		for i := int(junk.Len); i < event.TraceLen; i++ {
			junk.ID[i] = 0x5A
		}
		if id3 := junk.TraceID(); id3 != id {
			t.Errorf("TraceID() of %q depends on bytes past Len: %x vs %x", v, id, id3)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("TraceID() of %q and %q are both %x", v, prev, id)
		}
		seen[id] = v
		if v == "0123456789abcdef" && string(id[:]) == v {
			t.Errorf("16-byte user value %q used as the id verbatim", v)
		}
		if got := tr.Label(); got != v {
			t.Errorf("Label() = %q, want %q", got, v)
		}
	}
}

func TestTraceLabel(t *testing.T) {
	var none event.Trace
	if got := none.Label(); got != "" {
		t.Errorf("Label() of no trace = %q, want empty", got)
	}
	if none.Valid() {
		t.Error("zero Trace is Valid")
	}
	bin := userTrace(1, "\x00\x01ab\xff")
	if got := bin.Label(); got != "00016162ff" {
		t.Errorf("Label() of binary value = %q, want hex 00016162ff", got)
	}
	txt := userTrace(3, "tenant-7/req 9")
	if got := txt.Label(); got != "tenant-7/req 9" {
		t.Errorf("Label() = %q, want the text", got)
	}
}
