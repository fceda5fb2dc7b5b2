package main

import (
	"errors"
	"io"
	"testing"
)

func TestNodeSelection(t *testing.T) {
	n := &nodeOptions{match: []string{"api-*", "worker"}, exclude: []string{"api-debug*"}}
	for name, want := range map[string]bool{
		"api-gateway": true, "worker": true, "api-debug-1": false, "workers": false, "ctxwatch": false,
	} {
		if got := n.selected(name); got != want {
			t.Errorf("selected(%q) = %v, want %v", name, got, want)
		}
	}
	all := &nodeOptions{exclude: []string{"kube*"}}
	if !all.selected("api") || all.selected("kubelet") {
		t.Error("with no --match, every program but the excluded ones is selected")
	}
}

func TestNodeFlags(t *testing.T) {
	c, err := parseNodeFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.format != "json" || c.node.maxProcs != 64 || c.budgetPct != defaultNodeBudget ||
		c.export.MetricsAddr != ":9464" || c.node.logFormat != "json" {
		t.Errorf("defaults: format %q, max-procs %d, budget %g, metrics %q, logs %q",
			c.format, c.node.maxProcs, c.budgetPct, c.export.MetricsAddr, c.node.logFormat)
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
