package event_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/event"
)

// encode writes ev as the kernel side does, through the bpf2go type.
func encode(f *testing.F, ev bpf.CtxwatchEvent) []byte {
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &ev); err != nil {
		f.Fatalf("binary.Write: %v", err)
	}
	return buf.Bytes()
}

// FuzzDecode decodes ring buffer samples and compares every field with
// the bpf2go-generated struct read by encoding/binary, an independent
// decoder of the same layout. The probes bound nstack and len, but a
// sample is still untrusted: Decode must clamp them (16 frames, 32 trace
// bytes), reject short samples with ErrShort, and never panic, and the
// decoded traces must be printable. Seeds: one record of each kind and
// outcome, records with counts over the bounds, and short samples.
func FuzzDecode(f *testing.F) {
	base := func(kind event.Kind, outcome event.Outcome, nstack uint8) bpf.CtxwatchEvent {
		var ev bpf.CtxwatchEvent
		ev.KtimeNs, ev.Goid, ev.ParentGoid, ev.Pc, ev.SpawnNs, ev.Tgid = 1e9, 42, 7, 0x4a1b2c, 9e8, 4242
		ev.Type, ev.Outcome, ev.Nstack = uint8(kind), uint8(outcome), nstack
		copy(ev.T.Id[:], "\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36")
		copy(ev.T.Span[:], "\x00\xf0\x67\xaa\x0b\xa9\x02\xb7")
		ev.T.Len = 16
		for i := range ev.Stack[:min(int(nstack), len(ev.Stack))] {
			ev.Stack[i] = 0x4a0000 + uint64(i)*0x40
		}
		return ev
	}
	f.Add(encode(f, base(event.Spawn, 0, 3)))
	for _, o := range []event.Outcome{event.Propagated, event.Lost, event.NewRoot, event.Other} {
		ev := base(event.FirstCheck, o, 16)
		if o == event.NewRoot || o == event.Other {
			copy(ev.Other.Id[:], "0af7651916cd43dd8448eb211c80319c") // a user key's value
			ev.Other.Len, ev.Other.Key, ev.Other.Root = 32, 1, 1
		}
		f.Add(encode(f, ev))
	}
	dropped := base(event.Dropped, 0, 8)
	dropped.Other.Len = 0
	f.Add(encode(f, dropped))
	over := base(event.Overwritten, 0, 255)
	over.T.Len, over.Other.Len, over.Other.Key = 255, 33, 2
	f.Add(encode(f, over))
	f.Add(encode(f, base(event.Spawn, 0, 1))[:event.Size-1])
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, raw []byte) {
		var e event.Event
		err := event.Decode(raw, &e)
		if len(raw) < event.Size {
			if !errors.Is(err, event.ErrShort) {
				t.Fatalf("Decode of %d bytes: %v, want ErrShort", len(raw), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Decode of %d bytes: %v", len(raw), err)
		}
		var want bpf.CtxwatchEvent
		if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, &want); err != nil {
			t.Fatalf("binary.Read: %v", err)
		}
		if e.Time != want.KtimeNs || e.Goroutine != want.Goid || e.Parent != want.ParentGoid ||
			e.PC != want.Pc || e.SpawnTime != want.SpawnNs || e.PID != want.Tgid ||
			uint8(e.Kind) != want.Type || uint8(e.Outcome) != want.Outcome {
			t.Fatalf("Decode = %+v, binary.Read = %+v", e, want)
		}
		if e.NStack != min(int(want.Nstack), event.StackDepth) || len(e.Frames()) != e.NStack {
			t.Fatalf("NStack = %d (%d frames) for nstack %d", e.NStack, len(e.Frames()), want.Nstack)
		}
		for i, pc := range e.Frames() {
			if pc != want.Stack[i] {
				t.Fatalf("frame %d = %#x, want %#x", i, pc, want.Stack[i])
			}
		}
		checkTrace(t, &e.Trace, want.T.Id, want.T.Span, want.T.Len, want.T.Key, want.T.Root)
		checkTrace(t, &e.Other, want.Other.Id, want.Other.Span, want.Other.Len, want.Other.Key, want.Other.Root)
		if e.Kind.String() == "" {
			t.Fatalf("kind %d has no name", e.Kind)
		}
	})
}

// checkTrace compares a decoded trace with the fields binary.Read found.
func checkTrace(t *testing.T, got *event.Trace, id [event.TraceLen]uint8, span [8]uint8, n, key, root uint8) {
	t.Helper()
	l := min(int(n), event.TraceLen)
	if int(got.Len) != l || got.Key != key || got.Root != (root != 0) || got.ID != id || got.Span != span ||
		!bytes.Equal(got.Bytes(), id[:l]) {
		t.Fatalf("trace %+v, want id %x span %x len %d key %d root %d", *got, id, span, n, key, root)
	}
	got.TraceID()
	if label := got.Label(); got.Valid() != (label != "") {
		t.Fatalf("trace %+v: Valid %v, Label %q", *got, got.Valid(), label)
	}
}
