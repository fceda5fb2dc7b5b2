package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"testing"
)

func TestNodeFlags(t *testing.T) {
	c, err := parseNodeFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	n := c.target.Node
	if c.format != "json" || n.MaxProcs != 64 || c.budgetPct != defaultNodeBudget ||
		c.export.MetricsAddr != ":9464" || c.logFormat != "json" {
		t.Errorf("defaults: format %q, max-procs %d, budget %g, metrics %q, logs %q",
			c.format, n.MaxProcs, c.budgetPct, c.export.MetricsAddr, c.logFormat)
	}
	for _, args := range [][]string{
		{"--match", "[x"},
		{"--max-procs", "0"},
		{"--max-procs", "100000"},
		{"--log-format", "xml"},
		{"extra"},
		{"--trace-key", "nonsense"},
	} {
		if _, err := parseNodeFlags(args, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("parseNodeFlags(%q) = %v, want a usage error", args, err)
		}
	}
}

// TestUsageErrorIsQuiet: a flag that does not exist is one error, in both
// modes; the usage is printed for --help only (run adds a one-line hint).
func TestUsageErrorIsQuiet(t *testing.T) {
	for name, parse := range map[string]func([]string, io.Writer) (config, error){
		"ctxwatch": parseFlags, "ctxwatch node": parseNodeFlags,
	} {
		var out bytes.Buffer
		_, err := parse([]string{"--bogus"}, &out)
		if !errors.Is(err, errUsage) {
			t.Errorf("%s --bogus: %v, want a usage error", name, err)
		}
		if out.Len() != 0 {
			t.Errorf("%s --bogus printed %d bytes besides the error:\n%s", name, out.Len(), out.String())
		}
		out.Reset()
		if _, err := parse([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) || out.Len() == 0 {
			t.Errorf("%s --help: %v and %d bytes of usage, want ErrHelp and the usage", name, err, out.Len())
		}
	}
}
