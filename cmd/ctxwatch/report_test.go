package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
	"github.com/ctxwatch/ctxwatch/internal/report"
)

// TestPageFlags: --html, --source and --trace-url are flags of both watch
// modes; the page's options without --html, a --source that is no
// directory or a --trace-url without {trace_id} are usage errors.
func TestPageFlags(t *testing.T) {
	dir := t.TempDir()
	for name, parse := range map[string]func([]string, io.Writer) (config, error){
		"ctxwatch": parseFlags, "ctxwatch node": parseNodeFlags,
	} {
		cmd := []string{}
		if name == "ctxwatch" {
			cmd = []string{"--", "true"}
		}
		c, err := parse(append([]string{"--html", "p.html", "--source", dir, "--trace-url", "http://jaeger:16686/trace/{trace_id}"}, cmd...), io.Discard)
		if err != nil || c.html != "p.html" || c.page.SourceDir != dir || c.page.TraceURL != "http://jaeger:16686/trace/{trace_id}" {
			t.Errorf("%s: %v, html %q, page %+v", name, err, c.html, c.page)
		}
		for _, args := range [][]string{
			{"--source", dir},
			{"--trace-url", "http://j/{trace_id}"},
			{"--html", "p.html", "--source", filepath.Join(dir, "missing")},
			{"--html", "p.html", "--trace-url", "http://jaeger:16686/trace/"},
			{"--html", "p.html", "--trace-url", "javascript:alert('{trace_id}')"},
		} {
			if _, err := parse(append(args, cmd...), io.Discard); !errors.Is(err, errUsage) {
				t.Errorf("%s %q: %v, want a usage error", name, args, err)
			}
		}
	}
}

func TestReportFlags(t *testing.T) {
	c, err := parseReportFlags([]string{"--html", "out.html", "--trace-url", "https://j/t/{trace_id}", "in.json"}, io.Discard)
	if err != nil || c.html != "out.html" || c.input != "in.json" || c.page.TraceURL != "https://j/t/{trace_id}" {
		t.Errorf("parse: %v, %+v", err, c)
	}
	for _, args := range [][]string{
		{"in.json"},                      // no --html
		{"--html", "out.html"},           // no input
		{"--html", "out.html", "a", "b"}, // two inputs
		{"--html", "out.html", "--pid", "1", "in.json"},
	} {
		var out bytes.Buffer
		if _, err := parseReportFlags(args, &out); !errors.Is(err, errUsage) || out.Len() != 0 {
			t.Errorf("report %q: %v and %d bytes of output, want one usage error", args, err, out.Len())
		}
	}
	var out bytes.Buffer
	if _, err := parseReportFlags([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "ctxwatch report --html OUT") {
		t.Errorf("--help: %v:\n%s", err, out.String())
	}
}

// TestRunReport: ctxwatch report makes the page of a saved report, and
// refuses a file that is not one (exit status 2) in one line.
func TestRunReport(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "report.json")
	var buf bytes.Buffer
	site := analysis.Frame{Function: "main.handle", File: "/src/main.go", Line: 44}
	s := findings.Summary{Process: findings.Process{PID: 42, Executable: "svc"}}
	s.SpawnSites = []analysis.SpawnSite{{Site: site, TracedSpawns: 3, Lost: 3}}
	s.Breaks = []analysis.BreakCount{{Kind: analysis.LostAtSpawn, Site: site, Spawn: []analysis.Frame{site}, Count: 3, TraceID: "abc"}}
	if err := report.NewJSON(&buf).Summary(s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := log.New(&logs, "ctxwatch: ", 0)
	page := filepath.Join(dir, "page.html")
	if code := runReport([]string{"--html", page, in}, io.Discard, logger); code != 0 {
		t.Fatalf("exit status %d: %s", code, logs.String())
	}
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data-site="/src/main.go:44" data-traced="3"`, `data-kind="lost-at-spawn"`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("page lacks %s", want)
		}
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, append(buf.Bytes(), "oops\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if code := runReport([]string{"--html", page, bad}, io.Discard, logger); code != 2 || strings.Count(logs.String(), "\n") != 1 || !strings.Contains(logs.String(), "line 2") {
		t.Errorf("bad input: exit status %d, logs %q; want 2 and one line naming line 2", code, logs.String())
	}
	logs.Reset()
	if code := runReport([]string{"--html", filepath.Join(dir, "no", "such", "dir.html"), in}, io.Discard, logger); code != 1 {
		t.Errorf("unwritable page: exit status %d, logs %q; want 1", code, logs.String())
	}
}
