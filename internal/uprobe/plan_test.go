package uprobe_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

func TestParseTraceKey(t *testing.T) {
	good := []struct {
		in   string
		want uprobe.TraceKey
	}{
		{"type=main.traceKey", uprobe.TraceKey{Kind: uprobe.KeyType, Name: "main.traceKey"}},
		{"type=example.com/app/internal/obs.ctxKey", uprobe.TraceKey{Kind: uprobe.KeyType, Name: "example.com/app/internal/obs.ctxKey"}},
		{"string=trace_id", uprobe.TraceKey{Kind: uprobe.KeyString, Name: "trace_id"}},
		{"string=a=b", uprobe.TraceKey{Kind: uprobe.KeyString, Name: "a=b"}},
		{"string=" + strings.Repeat("k", uprobe.MaxKeyLen), uprobe.TraceKey{Kind: uprobe.KeyString, Name: strings.Repeat("k", uprobe.MaxKeyLen)}},
	}
	for _, c := range good {
		got, err := uprobe.ParseTraceKey(c.in)
		if err != nil {
			t.Errorf("ParseTraceKey(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseTraceKey(%q) = %+v, want %+v", c.in, got, c.want)
		}
		if s := got.String(); s != c.in {
			t.Errorf("ParseTraceKey(%q).String() = %q, want the input back", c.in, s)
		}
	}
	bad := []string{
		"",
		"type=",
		"string=",
		"foo=bar",
		"main.traceKey",
		"=main.traceKey",
		"Type=main.traceKey",
		"string=" + strings.Repeat("k", uprobe.MaxKeyLen+1),
	}
	for _, in := range bad {
		if got, err := uprobe.ParseTraceKey(in); err == nil {
			t.Errorf("ParseTraceKey(%q) = %+v, want an error", in, got)
		}
	}
}

// TestNewPlanErrorThenClose: a plan refused (a trace key type the binary
// lacks) leaves nothing reading the binary, which its caller closes at
// once: NewPlan reads the file's mapped text on other goroutines, and a
// read after Close is a fault that kills ctxwatch (found by TestBadTarget
// on Jaeger-sized work). The loop gives a stray goroutine many chances.
func TestNewPlanErrorThenClose(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		bin, err := target.Open(exe)
		if err != nil {
			t.Fatal(err)
		}
		_, err = uprobe.NewPlan(bin, uprobe.Options{TraceKeys: []uprobe.TraceKey{{Kind: uprobe.KeyType, Name: "main.noSuchKey"}}})
		if err == nil {
			t.Fatal("NewPlan with a trace key type not in the binary: no error")
		}
		bin.Close()
	}
	time.Sleep(100 * time.Millisecond) // a goroutine left reading would fault by now
}
