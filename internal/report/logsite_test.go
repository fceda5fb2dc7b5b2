package report

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
)

// TestLogSites: the table and the page list each log line's records
// written inside a trace, with and without it, as the summary counts them;
// a run without any shows no log section.
func TestLogSites(t *testing.T) {
	s, lines := sampleSummary()
	site := analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 42}
	s.LogSites = []analysis.LogSite{{Site: site, InsideTrace: 7, WithTrace: 2, WithoutTrace: 5}}

	var b bytes.Buffer
	if err := NewTable(&b, false).Summary(s); err != nil {
		t.Fatal(err)
	}
	row := ""
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "main.handle main.go:42") {
			row = strings.Join(strings.Fields(l), " ")
		}
	}
	if !strings.Contains(b.String(), "LOG SITE") || row != "main.handle main.go:42 7 2 5" {
		t.Errorf("table's log site row %q:\n%s", row, b.String())
	}

	doc := parsePage(t, writePage(t, HTMLOptions{}, lines, s))
	var rows []string
	walk(doc, func(n *html.Node) {
		if hasClass(n, "logsite") {
			site, _ := attr(n, "data-site")
			in, _ := attr(n, "data-inside")
			with, _ := attr(n, "data-with")
			without, _ := attr(n, "data-without")
			rows = append(rows, strings.Join([]string{site, in, with, without}, " "))
		}
	})
	if len(rows) != 1 || rows[0] != "/src/app/main.go:42 7 2 5" {
		t.Errorf("page's log sites %q", rows)
	}

	s.LogSites = nil
	b.Reset()
	if err := NewTable(&b, false).Summary(s); err != nil {
		t.Fatal(err)
	}
	page := writePage(t, HTMLOptions{}, lines, s)
	if strings.Contains(b.String(), "LOG SITE") || strings.Contains(page, "Log sites") {
		t.Errorf("a run without log records shows a log section")
	}
}
