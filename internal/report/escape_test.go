package report

import (
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"main.handle":              "main.handle",
		"héllo/世界.go":              "héllo/世界.go",
		"evil\x1b[2J\ndir":         `evil\x1b[2J\ndir`,
		"a\tb\rc\x00d":             `a\tb\rc\x00d`,
		"rtl\u202eog.niam":         `rtl\u202eog.niam`,
		"bad\xffutf8":              `bad\xffutf8`,
		"\u2028line\u2029sep\x7f":  `\u2028line\u2029sep\x7f`,
		"spaces stay, quotes \" '": "spaces stay, quotes \" '",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestTableEscapes: names from the target reach the table only escaped,
// so no row carries a control character and each row stays one line.
func TestTableEscapes(t *testing.T) {
	evil := analysis.Frame{Function: "main.h\x1b[31m", File: "/src/x\x1b[2J\ny.go", Line: 7}
	s := findings.Summary{Process: findings.Process{PID: 1, Executable: "exe\x1b]0;title\x07\nname"}}
	s.SpawnSites = []analysis.SpawnSite{{Site: evil, TracedSpawns: 1, Lost: 1}}
	s.Breaks = []analysis.BreakCount{{Kind: analysis.LostAtSpawn, Site: evil, Spawn: []analysis.Frame{evil}, Count: 1}}
	s.Notes = []string{"note\x1b[1m"}
	var b strings.Builder
	if err := NewTable(&b, false).Summary(s); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, c := range out {
		if c < ' ' && c != '\n' || c == 0x7f {
			t.Fatalf("control character %q in the table:\n%s", c, out)
		}
	}
	for _, want := range []string{`exe\x1b]0;title\a\nname`, `main.h\x1b[31m x\x1b[2J\ny.go:7`} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %s:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != 9 {
		t.Errorf("%d lines, want 9 (rows not split):\n%s", lines, out)
	}
}

// TestTableStacks: --verbose's stacks list the check's frames, then the
// spawn's, each escaped and on its own line.
func TestTableStacks(t *testing.T) {
	site := analysis.Frame{Function: "main.query", File: "/src/main.go", Line: 60}
	caller := analysis.Frame{Function: "main.handler\x1b[2J", File: "/src/main.go", Line: 44}
	spawn := analysis.Frame{Function: "main.serve", File: "/src/main.go", Line: 20}
	s := findings.Summary{Process: findings.Process{PID: 1, Executable: "exe"}}
	s.Breaks = []analysis.BreakCount{
		{Kind: analysis.LostAtSpawn, Site: site, Stack: []analysis.Frame{site, caller}, Spawn: []analysis.Frame{spawn}, Count: 2},
		{Kind: analysis.Dropped, Site: site, Count: 1}, // no stack: no section
	}
	for _, stacks := range []bool{false, true} {
		var b strings.Builder
		tb := NewTable(&b, false)
		tb.Stacks = stacks
		if err := tb.Summary(s); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		want := "\nstack of lost-at-spawn at main.query main.go:60\n" +
			"    main.query main.go:60\n" +
			"    main.handler\\x1b[2J main.go:44\n" +
			"  spawned at\n" +
			"    main.serve main.go:20\n"
		if got := strings.Contains(out, want); got != stacks {
			t.Errorf("Stacks=%v: stack section present %v, want %v:\n%s", stacks, got, stacks, out)
		}
		if strings.Contains(out, "stack of dropped") {
			t.Errorf("Stacks=%v: a section for a break without stacks:\n%s", stacks, out)
		}
	}
}
