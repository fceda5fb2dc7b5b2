package uprobe_test

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/event"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// field is a member the agent decodes at a fixed offset.
type field struct {
	name   string
	offset uint32
	size   int
}

// These are the offsets internal/event.Decode reads; if bpf/ctxwatch.c
// changes struct event or struct trace, this test must fail until Decode
// follows (the Tetragon alignchecker idea, against the object's own BTF).
const traceSize = event.TraceLen + 8 + 8

var eventFields = []field{
	{"ktime_ns", 0, 8},
	{"goid", 8, 8},
	{"parent_goid", 16, 8},
	{"pc", 24, 8},
	{"spawn_ns", 32, 8},
	{"tgid", 40, 4},
	{"type", 44, 1},
	{"outcome", 45, 1},
	{"nstack", 46, 1},
	{"t", 48, traceSize},
	{"other", 48 + traceSize, traceSize},
	{"stack", 48 + 2*traceSize, event.StackDepth * 8},
}

var traceFields = []field{
	{"id", 0, event.TraceLen},
	{"span", event.TraceLen, 8},
	{"len", event.TraceLen + 8, 1},
	{"key", event.TraceLen + 9, 1},
	{"root", event.TraceLen + 10, 1},
}

func structFromBTF(t *testing.T, spec *btf.Spec, name string) *btf.Struct {
	t.Helper()
	var s *btf.Struct
	if err := spec.TypeByName(name, &s); err != nil {
		t.Fatalf("struct %s in the object's BTF: %v", name, err)
	}
	return s
}

func checkStruct(t *testing.T, s *btf.Struct, size int, fields []field) {
	t.Helper()
	if int(s.Size) != size {
		t.Errorf("sizeof(struct %s) = %d in BTF, agent assumes %d", s.Name, s.Size, size)
	}
	members := map[string]btf.Member{}
	decoded := map[string]bool{}
	for _, f := range fields {
		decoded[f.name] = true
	}
	for _, m := range s.Members {
		members[m.Name] = m
		// A member the agent does not decode is padding, named so: a
		// field added to the C record, even into its padding, fails here
		// until Decode reads it.
		if !decoded[m.Name] && !strings.HasPrefix(m.Name, "_pad") {
			t.Errorf("struct %s has member %s, which the agent does not decode", s.Name, m.Name)
		}
	}
	for _, f := range fields {
		m, ok := members[f.name]
		if !ok {
			t.Errorf("struct %s has no member %s", s.Name, f.name)
			continue
		}
		if m.BitfieldSize != 0 {
			t.Errorf("%s.%s is a bitfield", s.Name, f.name)
		}
		if got := m.Offset.Bytes(); got != f.offset || m.Offset%8 != 0 {
			t.Errorf("offsetof(%s.%s) = %d bits, agent reads byte %d", s.Name, f.name, m.Offset, f.offset)
		}
		sz, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Errorf("sizeof(%s.%s): %v", s.Name, f.name, err)
			continue
		}
		if sz != f.size {
			t.Errorf("sizeof(%s.%s) = %d, agent reads %d bytes", s.Name, f.name, sz, f.size)
		}
	}
}

func TestEventLayoutMatchesBTF(t *testing.T) {
	spec, err := bpf.LoadCtxwatch()
	if err != nil {
		t.Fatalf("LoadCtxwatch: %v", err)
	}
	if spec.Types == nil {
		t.Fatal("object has no BTF")
	}
	ev := structFromBTF(t, spec.Types, "event")
	checkStruct(t, ev, event.Size, eventFields)
	tr := structFromBTF(t, spec.Types, "trace")
	checkStruct(t, tr, traceSize, traceFields)

	// The members that are arrays must have the lengths the agent assumes.
	arrays := map[string]struct {
		s   *btf.Struct
		len uint32
	}{
		"event.stack": {ev, event.StackDepth},
		"trace.id":    {tr, event.TraceLen},
		"trace.span":  {tr, 8},
	}
	for name, a := range arrays {
		for _, m := range a.s.Members {
			if a.s.Name+"."+m.Name != name {
				continue
			}
			arr, ok := btf.UnderlyingType(m.Type).(*btf.Array)
			if !ok {
				t.Errorf("%s is %v, not an array", name, m.Type)
				continue
			}
			if arr.Nelems != a.len {
				t.Errorf("%s has %d elements, agent assumes %d", name, arr.Nelems, a.len)
			}
		}
	}
	// event.t and event.other are struct trace, not a look-alike.
	for _, m := range ev.Members {
		if m.Name != "t" && m.Name != "other" {
			continue
		}
		if s, ok := btf.UnderlyingType(m.Type).(*btf.Struct); !ok || s.Name != "trace" {
			t.Errorf("event.%s is %v, want struct trace", m.Name, m.Type)
		}
	}
}

// TestEnumsMatchObject pins the agent's names for the values the probes
// write (event types, outcomes, key kinds) to the enums bpf2go generated
// from bpf/ctxwatch.c, both ways: a value added in C and not in Go fails.
func TestEnumsMatchObject(t *testing.T) {
	kinds := map[event.Kind]bpf.CtxwatchEventType{
		event.Spawn:       bpf.CtxwatchEventTypeEV_SPAWN,
		event.FirstCheck:  bpf.CtxwatchEventTypeEV_FIRST_CHECK,
		event.Dropped:     bpf.CtxwatchEventTypeEV_DROPPED,
		event.Overwritten: bpf.CtxwatchEventTypeEV_OVERWRITTEN,
		event.StaleParent: bpf.CtxwatchEventTypeEV_STALE_PARENT,
		event.Log:         bpf.CtxwatchEventTypeEV_LOG,
		event.Handoff:     bpf.CtxwatchEventTypeEV_HANDOFF,
	}
	outcomes := map[event.Outcome]bpf.CtxwatchOutcome{
		event.Propagated: bpf.CtxwatchOutcomeOUT_PROPAGATED,
		event.Lost:       bpf.CtxwatchOutcomeOUT_LOST,
		event.NewRoot:    bpf.CtxwatchOutcomeOUT_NEW_ROOT,
		event.Other:      bpf.CtxwatchOutcomeOUT_OTHER,
		event.Traceless:  bpf.CtxwatchOutcomeOUT_TRACELESS,
	}
	keys := map[uprobe.KeyKind]bpf.CtxwatchKeyKind{
		uprobe.KeyType:       bpf.CtxwatchKeyKindKEY_TYPE,
		uprobe.KeyString:     bpf.CtxwatchKeyKindKEY_STRING,
		uprobe.KeyTypeString: bpf.CtxwatchKeyKindKEY_TYPE_STRING,
		uprobe.KeyTypeInt:    bpf.CtxwatchKeyKindKEY_TYPE_INT,
	}
	for g, c := range kinds {
		if uint32(g) != uint32(c) {
			t.Errorf("event.%v = %d, the probes write %d", g, g, c)
		}
	}
	for g, c := range outcomes {
		if uint32(g) != uint32(c) {
			t.Errorf("outcome %d in Go, the probes write %d", g, c)
		}
	}
	for g, c := range keys {
		if uint32(g) != uint32(c) {
			t.Errorf("key kind %d in Go, the probes read %d", g, c)
		}
	}

	// Both ways: every enumerator in the object's BTF has its Go name.
	spec, err := bpf.LoadCtxwatch()
	if err != nil {
		t.Fatalf("LoadCtxwatch: %v", err)
	}
	for name, n := range map[string]int{"event_type": len(kinds), "outcome": len(outcomes), "key_kind": len(keys) + 1} {
		var e *btf.Enum
		if err := spec.Types.TypeByName(name, &e); err != nil {
			t.Fatalf("enum %s in the object's BTF: %v", name, err)
		}
		if len(e.Values) != n {
			t.Errorf("enum %s has %d values in C, the agent names %d", name, len(e.Values), n)
		}
	}
}
