package uprobe_test

import (
	"strings"
	"testing"

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
