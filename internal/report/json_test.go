package report

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/event"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// TestJSONStaleParent: a stale-parent break line names the ended parent
// span and the span started on it (parent_span_id, span_id), under the one
// trace_id they share, with no other_trace_id and no spawn; ReadJSON reads
// them back for the page.
func TestJSONStaleParent(t *testing.T) {
	var parent event.Trace
	parent.Len = 16
	copy(parent.ID[:], []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36})
	parent.Span = [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	child := parent
	child.Span = [8]byte{0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0x8f}
	site := analysis.Frame{Function: "main.itemsStale", File: "/src/app/main.go", Line: 85}
	caller := analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 124}
	b := analysis.Break{Kind: analysis.StaleParent, PID: 42, Trace: parent, Other: child, Goroutine: 1,
		Site: site, Stack: []analysis.Frame{site, caller}, Time: 10, First: true, Count: 1}

	var buf bytes.Buffer
	if err := NewJSON(&buf).Break(findings.Process{PID: 42}, b); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatalf("break line is not JSON: %v: %s", err, buf.Bytes())
	}
	for k, want := range map[string]any{
		"kind":           "stale-parent",
		"trace_id":       "4bf92f3577b34da6a3ce929d0e0e4736",
		"parent_span_id": "00f067aa0ba902b7",
		"span_id":        "53995c3f42cd8a8f",
	} {
		if raw[k] != want {
			t.Errorf("%s = %v, want %v in %s", k, raw[k], want, buf.Bytes())
		}
	}
	for _, k := range []string{"other_trace_id", "spawn", "parent_goroutine", "after_ns"} {
		if _, ok := raw[k]; ok {
			t.Errorf("%s present in a stale-parent line: %s", k, buf.Bytes())
		}
	}
	if st, _ := raw["stack"].([]any); len(st) != 2 {
		t.Errorf("stack = %v, want the two user frames", raw["stack"])
	}

	lines, err := ReadJSON(&buf)
	if err != nil || len(lines) != 1 || lines[0].Break == nil {
		t.Fatalf("ReadJSON: %v, %+v", err, lines)
	}
	if l := lines[0].Break; l.ParentSpanID != "00f067aa0ba902b7" || l.SpanID != "53995c3f42cd8a8f" || l.OtherTraceID != "" {
		t.Errorf("read back: parent span %q, span %q, other trace %q", l.ParentSpanID, l.SpanID, l.OtherTraceID)
	}
}
