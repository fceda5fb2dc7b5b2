package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/event"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// pageElements are the elements the template writes; any other element in
// a page was injected.
var pageElements = []string{
	"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "main", "section",
	"div", "svg", "g", "path", "polygon", "rect", "text", "table", "thead", "tbody", "tr", "th", "td",
	"span", "b", "a", "ul", "ol", "li", "figure", "figcaption", "pre",
}

// hostile names try to end an attribute, open an element, run script or
// write to a terminal.
var hostile = []string{
	`main.<script>alert(1)</script>`,
	`"><img src=x onerror=alert(1)>`,
	"\x1b[2J\u202egnp.exe",
	`'><svg onload=alert(1)><a href="javascript:alert(1)">x</a>`,
	`</style><script>alert(1)</script>`,
	`</title><iframe src="https://evil.example/"></iframe>`,
}

// hostileSummary is a process whose every name from the target is hostile.
func hostileSummary() (findings.Summary, []BreakLine) {
	p := findings.Process{PID: 666, Executable: hostile[1] + hostile[2], GoVersion: hostile[5],
		ContainerID: hostile[3], PodUID: hostile[4]}
	var sites []analysis.SpawnSite
	var breaks []analysis.BreakCount
	var lines []BreakLine
	for i, name := range hostile {
		f := analysis.Frame{Function: name, File: "/src/" + name + ".go", Line: i + 1}
		g := analysis.Frame{Function: "main." + name, File: name, Line: 100 + i}
		sites = append(sites, analysis.SpawnSite{Site: g, TracedSpawns: 3, Propagated: 1, Lost: 1, NewRoot: 1})
		kind := []analysis.Kind{analysis.LostAtSpawn, analysis.NewRoot, analysis.Dropped, analysis.Overwritten, analysis.StaleParent}[i%5]
		var spawn []analysis.Frame
		if kind == analysis.LostAtSpawn || kind == analysis.NewRoot {
			spawn = []analysis.Frame{g, f}
		}
		breaks = append(breaks, analysis.BreakCount{Kind: kind, Site: f, Stack: []analysis.Frame{f, g}, Spawn: spawn, Count: 2, TraceID: name})
		lines = append(lines, BreakLine{Process: p, Kind: kind, TraceID: name, OtherTraceID: name, Site: f, Stack: []analysis.Frame{f, g}, Spawn: spawn, AfterNS: 1500})
	}
	s := findings.Summary{Process: p, Snapshot: analysis.Snapshot{PID: 666, Events: 9, Unmatched: 1, SpawnSites: sites, Breaks: breaks}}
	s.EventsLost, s.DurationS = 2, 1.5
	s.Notes = hostile
	s.Budget, s.SampledFraction = &findings.BudgetStats{Budget: 0.05}, 0.5
	return s, lines
}

func writePage(t *testing.T, opts HTMLOptions, lines []BreakLine, sums ...findings.Summary) string {
	t.Helper()
	h := NewHTML(opts)
	for _, l := range lines {
		h.BreakLine(l)
	}
	for _, s := range sums {
		if err := h.Summary(s); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := h.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func parsePage(t *testing.T, page string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatalf("page does not parse: %v", err)
	}
	return doc
}

// walk calls f for every element under n.
func walk(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasClass(n *html.Node, class string) bool {
	v, _ := attr(n, "class")
	return slices.Contains(strings.Fields(v), class)
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(n)
	return b.String()
}

// TestHTMLHostileNames: names from the target (functions, files, the
// executable, trace values, notes) add no element and no attribute to
// the page, and reach it as text, escaped as in the table.
func TestHTMLHostileNames(t *testing.T) {
	s, lines := hostileSummary()
	page := writePage(t, HTMLOptions{TraceURL: "http://jaeger:16686/trace/{trace_id}"}, lines, s)
	doc := parsePage(t, page)

	scripts, elements := 0, map[string]int{}
	walk(doc, func(n *html.Node) {
		elements[n.Data]++
		if n.Data == "script" {
			scripts++
		}
		for _, a := range n.Attr {
			if strings.HasPrefix(strings.ToLower(a.Key), "on") || a.Key == "src" || a.Key == "style" {
				t.Errorf("<%s> has an injected attribute %s=%q", n.Data, a.Key, a.Val)
			}
			if a.Key == "href" && strings.Contains(strings.ToLower(a.Val), "javascript:") {
				t.Errorf("<%s> links to %q", n.Data, a.Val)
			}
		}
	})
	if scripts != 0 {
		t.Errorf("%d <script> elements, want 0", scripts)
	}
	for e := range elements {
		if !slices.Contains(pageElements, e) {
			t.Errorf("element <%s> injected (%d)", e, elements[e])
		}
	}
	for _, c := range page {
		if c < ' ' && c != '\n' || c == 0x7f || c == '\u202e' {
			t.Fatalf("control character %q in the page", c)
		}
	}
	text := textOf(doc)
	for _, want := range []string{
		"pid 666 " + Printable(s.Executable),
		hostile[1] + " " + hostile[1] + ".go:2", // a break site, named as in the table
		"note: " + hostile[4],
		`\x1b[2J\u202egnp.exe`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
	// Trace values are the target's too: in a link, percent-encoded.
	var hrefs []string
	walk(doc, func(n *html.Node) {
		if v, ok := attr(n, "href"); ok && !strings.HasPrefix(v, "#") {
			hrefs = append(hrefs, v)
		}
	})
	if want := "http://jaeger:16686/trace/main.%3Cscript%3Ealert%281%29%3C%2Fscript%3E"; !slices.Contains(hrefs, want) {
		t.Errorf("trace links %q lack %q", hrefs, want)
	}
}

// TestHTMLNoExternalResources: the page fetches nothing: no src, no
// stylesheet or import, no url(); the only absolute URLs are the trace
// links made from --trace-url. The elements and attributes are checked on
// a page with hostile names too; the text, on a page without (hostile
// names are shown, as text, with their "src=" and "https://").
func TestHTMLNoExternalResources(t *testing.T) {
	s, lines := hostileSummary()
	plain, plainLines := sampleSummary()
	for _, c := range []struct {
		traceURL string
		hostile  bool
	}{{"", false}, {"https://jaeger.example:16686/trace/{trace_id}", false}, {"", true}, {"http://j/{trace_id}", true}} {
		traceURL := c.traceURL
		page := writePage(t, HTMLOptions{TraceURL: traceURL}, plainLines, plain)
		if c.hostile {
			page = writePage(t, HTMLOptions{TraceURL: traceURL}, lines, s, plain)
		}
		doc := parsePage(t, page)
		var links []string
		walk(doc, func(n *html.Node) {
			for _, a := range n.Attr {
				switch {
				case a.Key == "src" || a.Key == "srcset" || a.Key == "xlink:href" || a.Key == "action" || a.Key == "poster":
					t.Errorf("<%s %s=%q>", n.Data, a.Key, a.Val)
				case a.Key == "href" && !strings.HasPrefix(a.Val, "#"):
					if n.Data != "a" || traceURL == "" || !strings.HasPrefix(a.Val, strings.TrimSuffix(traceURL, "{trace_id}")) {
						t.Errorf("<%s href=%q>: not a trace link of %q", n.Data, a.Val, traceURL)
					}
					links = append(links, a.Val)
				}
			}
			if n.Data == "link" || n.Data == "img" || n.Data == "iframe" || n.Data == "object" || n.Data == "embed" || n.Data == "base" {
				t.Errorf("element <%s>", n.Data)
			}
		})
		if traceURL != "" && len(links) == 0 {
			t.Errorf("--trace-url %q: no trace link", traceURL)
		}
		if c.hostile {
			continue
		}
		for _, bad := range []string{"@import", "url(", "src="} {
			if strings.Contains(strings.ToLower(page), bad) {
				t.Errorf("--trace-url %q: the page holds %q", traceURL, bad)
			}
		}
		rest := page
		for _, l := range links {
			rest = strings.ReplaceAll(rest, l, "")
		}
		for _, scheme := range []string{"http://", "https://", "//"} {
			if i := strings.Index(rest, scheme); i >= 0 {
				t.Errorf("--trace-url %q: %q outside trace links: ...%s...", traceURL, scheme, rest[max(0, i-60):min(len(rest), i+60)])
			}
		}
	}
}

// sampleSummary is examples/fireforget's summary, by hand.
func sampleSummary() (findings.Summary, []BreakLine) {
	file := "/src/examples/fireforget/main.go"
	handler := analysis.Frame{Function: "main.handler.func1", File: file, Line: 61}
	closure := analysis.Frame{Function: "main.handler.func1", File: file, Line: 63}
	timer := analysis.Frame{Function: "main.handler.func1", File: file, Line: 73}
	lib := []analysis.Frame{
		{Function: "net/http.HandlerFunc.ServeHTTP", File: "/usr/lib/go/src/net/http/server.go", Line: 2322},
		{Function: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp.(*middleware).serveHTTP",
			File: "/root/go/pkg/mod/go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp@v0.72.0/handler.go", Line: 179},
	}
	rootSite := analysis.Frame{Function: "main.rootTask", File: file, Line: 104}
	timerSite := analysis.Frame{Function: "main.timerTask", File: file, Line: 117}
	p := findings.Process{PID: 4242, Executable: "fireforget", GoVersion: "go1.26.8"}
	s := findings.Summary{Process: p, DurationS: 0.4, SampledFraction: 1}
	s.Snapshot = analysis.Snapshot{PID: 4242, Events: 250,
		SpawnSites: []analysis.SpawnSite{
			{Site: handler, TracedSpawns: 20, NewRoot: 20},
			{Site: timer, TracedSpawns: 20, Lost: 20},
			{Site: closure, TracedSpawns: 20, Propagated: 20},
		},
		Breaks: []analysis.BreakCount{
			{Kind: analysis.NewRoot, Site: rootSite, Stack: []analysis.Frame{rootSite}, Spawn: append([]analysis.Frame{handler}, lib...), Count: 20, TraceID: "f4835a3cf858456bf88b410056912a2b"},
			{Kind: analysis.LostAtSpawn, Site: timerSite, Stack: []analysis.Frame{timerSite}, Spawn: append([]analysis.Frame{timer}, lib...), Count: 20, TraceID: "a5509ef7ed7a7d905026e01f1722f3fd"},
		},
	}
	var lines []BreakLine
	for i, b := range s.Breaks {
		lines = append(lines, BreakLine{Process: p, Kind: b.Kind, TraceID: b.TraceID, OtherTraceID: fmt.Sprintf("%032x", i+1),
			Goroutine: uint64(10 + i), ParentGoroutine: 7, Site: b.Site, Stack: b.Stack, Spawn: b.Spawn, AfterNS: 1_234_567})
	}
	return s, lines
}

// pageData is what a page says, as the integration test reads it too.
type pageData struct {
	sites  []string // FILE:LINE traced kept lost newroot notjudged
	breaks []string // kind FILE:LINE count trace
	flow   []string // edges: from -> to
}

func readPage(doc *html.Node) pageData {
	var d pageData
	walk(doc, func(n *html.Node) {
		a := func(k string) string { v, _ := attr(n, k); return v }
		switch {
		case n.Data == "tr" && hasClass(n, "site"):
			d.sites = append(d.sites, strings.Join([]string{a("data-site"), a("data-traced"), a("data-kept"), a("data-lost"), a("data-newroot"), a("data-notjudged")}, " "))
		case n.Data == "tr" && hasClass(n, "break"):
			d.breaks = append(d.breaks, strings.Join([]string{a("data-kind"), a("data-site"), a("data-count"), a("data-trace")}, " "))
		case n.Data == "g" && hasClass(n, "edge"):
			d.flow = append(d.flow, a("data-from")+" -> "+a("data-to"))
		}
	})
	return d
}

// TestHTMLContent: the page lists the summary's spawn sites and breaks
// with their counts, draws the flow from the handler through each spawn
// site to each break site, and shows the first occurrence's details.
func TestHTMLContent(t *testing.T) {
	s, lines := sampleSummary()
	page := writePage(t, HTMLOptions{TraceURL: "http://jaeger:16686/trace/{trace_id}"}, lines, s)
	doc := parsePage(t, page)
	got := readPage(doc)
	file := "/src/examples/fireforget/main.go"
	want := pageData{
		sites: []string{file + ":61 20 0 0 20 0", file + ":73 20 0 20 0 0", file + ":63 20 20 0 0 0"},
		breaks: []string{
			"new-root " + file + ":104 20 f4835a3cf858456bf88b410056912a2b",
			"lost-at-spawn " + file + ":117 20 a5509ef7ed7a7d905026e01f1722f3fd",
		},
		flow: []string{
			"main.handler.func1 -> " + file + ":61", "main.handler.func1 -> " + file + ":73", "main.handler.func1 -> " + file + ":63",
			file + ":61 -> " + file + ":104", file + ":73 -> " + file + ":117",
		},
	}
	if !slices.Equal(got.sites, want.sites) || !slices.Equal(got.breaks, want.breaks) || !slices.Equal(got.flow, want.flow) {
		t.Errorf("page says\n%q\n%q\n%q\nwant\n%q\n%q\n%q", got.sites, got.breaks, got.flow, want.sites, want.breaks, want.flow)
	}
	text := textOf(doc)
	for _, w := range []string{
		"pid 4242 fireforget (go1.26.8), 0.4s, 250 events, 0 lost",
		"20/0/20", "20/20/0", "new-root ×20",
		"main.handler.func1 main.go:61",                   // spawned at
		"otelhttp.(*middleware).serveHTTP handler.go:179", // the spawn stack
		fmt.Sprintf("%032x", 1),                           // other trace, from the break line
		"1.235ms",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("page text lacks %q", w)
		}
	}
	if !strings.Contains(page, `href="http://jaeger:16686/trace/f4835a3cf858456bf88b410056912a2b"`) {
		t.Errorf("no trace link")
	}
	if strings.Contains(text, "incomplete") || strings.Contains(text, "budget") {
		t.Errorf("a complete run without budget says incomplete or budget:\n%s", text)
	}
}

// TestHTMLWarnings: the page says what the table says of a run whose
// verdicts are incomplete or whose probes were duty-cycled.
func TestHTMLWarnings(t *testing.T) {
	s, _ := sampleSummary()
	s.EventsLost, s.Unmatched = 12, 3
	s.Budget, s.SampledFraction = &findings.BudgetStats{Budget: 0.05}, 0.25
	text := textOf(parsePage(t, writePage(t, HTMLOptions{}, nil, s)))
	for _, w := range []string{
		"verdicts incomplete: 12 events lost, 3 first checks without their spawn",
		"12 lost, probes in 25.0% of the time (budget 5%)",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("page text lacks %q", w)
		}
	}
}

// TestHTMLBreaksWithoutSummary: breaks of a process whose summary never
// came are shown all the same, marked so.
func TestHTMLBreaksWithoutSummary(t *testing.T) {
	_, lines := sampleSummary()
	doc := parsePage(t, writePage(t, HTMLOptions{}, lines))
	if got := readPage(doc).breaks; len(got) != 2 || !strings.HasPrefix(got[0], "new-root /src/examples/fireforget/main.go:104  ") {
		t.Errorf("breaks %q", got)
	}
	if !strings.Contains(textOf(doc), "No summary") {
		t.Errorf("not marked as without summary")
	}
}

// TestHTMLFlowLayout: fifty spawn sites, each broken at a site of its own,
// and a few drops make a graph whose nodes never overlap.
func TestHTMLFlowLayout(t *testing.T) {
	var s findings.Summary
	for i := range 50 {
		site := analysis.Frame{Function: fmt.Sprintf("main.handler%d", i%7), File: "/src/main.go", Line: 100 + i}
		s.SpawnSites = append(s.SpawnSites, analysis.SpawnSite{Site: site, TracedSpawns: 5, Lost: 5})
		at := analysis.Frame{Function: "main.task", File: "/src/task.go", Line: 10 + i%30}
		s.Breaks = append(s.Breaks, analysis.BreakCount{Kind: analysis.LostAtSpawn, Site: at, Spawn: []analysis.Frame{site}, Count: 5})
	}
	for i := range 5 {
		at := analysis.Frame{Function: "main.task", File: "/src/task.go", Line: 10 + i} // also a site of lost-at-spawn
		s.Breaks = append(s.Breaks, analysis.BreakCount{Kind: analysis.Dropped, Site: at,
			Stack: []analysis.Frame{at, {Function: "main.serve", File: "/src/main.go", Line: 9}}, Count: 1})
	}
	g := buildFlow(&s)
	type cell struct{ x, y int }
	seen := map[cell]string{}
	for _, n := range g.Nodes {
		c := cell{n.X, n.Y}
		if other, ok := seen[c]; ok {
			t.Errorf("nodes %q and %q overlap at %v", other, n.Title, c)
		}
		seen[c] = n.Title
		if n.Y+n.H > g.Height || n.X+n.W > g.Width {
			t.Errorf("node %q outside the graph", n.Title)
		}
	}
	if want := 50 + 30 + 7 + 1; len(g.Nodes) != want { // sites, break sites, handlers, main.serve
		t.Errorf("%d nodes, want %d", len(g.Nodes), want)
	}
	if want := 50 + 50 + 5; len(g.Edges) != want {
		t.Errorf("%d edges, want %d", len(g.Edges), want)
	}
	if g.Height > 2000 {
		t.Errorf("graph %d px tall for 50 sites", g.Height)
	}
}

// TestHTMLSource: source lines are read around each site from a
// module-relative name under the source directory, and never from a file
// that is not Go source, nor from a FIFO (which would block).
func TestHTMLSource(t *testing.T) {
	dir := t.TempDir()
	var src strings.Builder
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&src, "\tline %d <b>\n", i)
	}
	if err := os.MkdirAll(filepath.Join(dir, "examples", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "examples", "x", "main.go"), []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.go"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newSourceReader(dir)
	lines, path := r.excerpt("github.com/me/app/examples/x/main.go", 10)
	if len(lines) != 7 || lines[0].N != 7 || !lines[3].Hit || lines[3].Text != "    line 10 <b>" || path != filepath.Join(dir, "examples/x/main.go") {
		t.Errorf("excerpt of line 10: %+v from %q", lines, path)
	}
	if lines, _ := r.excerpt("github.com/me/app/examples/x/main.go", 1); len(lines) != 4 {
		t.Errorf("excerpt of line 1: %d lines, want 4", len(lines))
	}
	done := make(chan bool)
	go func() {
		for _, name := range []string{filepath.Join(dir, "secret"), filepath.Join(dir, "fifo.go"), "fifo.go", "../../etc/x.go", "/nonexistent/x.go"} {
			if lines, _ := r.excerpt(name, 1); lines != nil {
				t.Errorf("excerpt of %s: %+v", name, lines)
			}
		}
		done <- true
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reading a FIFO named .go blocked")
	}

	// In the page: the excerpt is linked from the site.
	s := findings.Summary{Process: findings.Process{PID: 1, Executable: "x"}}
	site := analysis.Frame{Function: "main.main", File: "github.com/me/app/examples/x/main.go", Line: 10}
	s.SpawnSites = []analysis.SpawnSite{{Site: site, TracedSpawns: 1, Propagated: 1}}
	page := writePage(t, HTMLOptions{SourceDir: dir}, nil, s)
	for _, want := range []string{`<a href="#p0-src0">main.main main.go:10</a>`, `<span class="line hit"><span class="ln">10</span>    line 10 &lt;b&gt;</span>`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

func TestEscapeURLComponent(t *testing.T) {
	for in, want := range map[string]string{
		"f4835a3cf858456bf88b410056912a2b": "f4835a3cf858456bf88b410056912a2b",
		"req 1/2?x=y&z#f":                  "req%201%2F2%3Fx%3Dy%26z%23f",
		"a-b_c.d~e":                        "a-b_c.d~e",
	} {
		if got := escapeURLComponent(in); got != want {
			t.Errorf("escapeURLComponent(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReadJSONRoundTrip: what JSON writes, ReadJSON reads back: the break
// lines with their trace labels, the summaries whole (the incomplete note
// JSON adds is the summary's own, so it is not read as a note).
func TestReadJSONRoundTrip(t *testing.T) {
	s, _ := sampleSummary()
	s.ContainerID, s.PodUID = "c0ffee", "pod-1"
	s.EventsLost, s.Unmatched, s.Forgotten, s.NeverJudged, s.StatesEvicted, s.ProbeHits = 1, 2, 3, 4, 5, 6
	s.Budget = &findings.BudgetStats{Budget: 0.05, Overhead: 0.01, HitCostNS: 6000, CPUs: 2, Detaches: 3}
	s.Export = &findings.ExportStats{Sent: 1, Dropped: 2, Suppressed: 3}
	s.Notes = []string{"otlp: 1 break spans sent"}
	s.SpawnSites[0].NeverJudged = 4
	s.LogSites = []analysis.LogSite{{Site: s.Breaks[0].Site, InsideTrace: 3, WithTrace: 1, WithoutTrace: 2}}
	s.StartSites = []analysis.StartSite{{Site: s.Breaks[0].Site, Started: 5, Kept: 1, Stale: 4}}
	empty := findings.Summary{Process: findings.Process{PID: 9, Executable: "idle"}, Snapshot: analysis.Snapshot{PID: 9}}

	var tr event.Trace
	tr.Len = 16
	copy(tr.ID[:], "0123456789abcdef")
	user := event.Trace{Len: 5, Key: 1}
	copy(user.ID[:], "req-7")
	b := analysis.Break{Kind: analysis.NewRoot, Trace: tr, Other: user, Goroutine: 12, ParentGoroutine: 7,
		Site: s.Breaks[0].Site, Stack: s.Breaks[0].Stack, Spawn: s.Breaks[0].Spawn, SpawnTime: 100, Time: 350, First: true}

	var buf bytes.Buffer
	j := NewJSON(&buf)
	if err := j.Break(s.Process, b); err != nil {
		t.Fatal(err)
	}
	for _, sum := range []findings.Summary{s, empty} {
		if err := j.Summary(sum); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Break == nil || got[1].Summary == nil || got[2].Summary == nil {
		t.Fatalf("read %d lines: %+v", len(got), got)
	}
	wantBreak := BreakLine{Process: findings.Process{PID: s.Process.PID, ContainerID: "c0ffee", PodUID: "pod-1"},
		Kind: b.Kind, TraceID: tr.Label(), OtherTraceID: "req-7", Goroutine: 12, ParentGoroutine: 7,
		Site: b.Site, Stack: b.Stack, Spawn: b.Spawn, AfterNS: 250}
	if !reflect.DeepEqual(*got[0].Break, wantBreak) {
		t.Errorf("break line\n%+v\nwant\n%+v", *got[0].Break, wantBreak)
	}
	for i, want := range []findings.Summary{s, empty} {
		if g := *got[i+1].Summary; !reflect.DeepEqual(g, want) {
			t.Errorf("summary\n%+v\nwant\n%+v", g, want)
		}
	}
}

func TestReadJSONRejects(t *testing.T) {
	for _, in := range []string{
		"{\"type\":\"summary\",\"pid\":1}\nnot json\n",
		`{"type":"progress"}`,
		`{"type":"break","pid":"one"}`,
	} {
		if _, err := ReadJSON(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("ReadJSON(%q) = %v, want an error naming the line", in, err)
		}
	}
	if l, err := ReadJSON(strings.NewReader("\n{\"type\":\"summary\",\"pid\":1,\"spawn_sites\":[],\"breaks\":[]}")); err != nil || len(l) != 1 {
		t.Errorf("a last line without newline: %d lines, %v", len(l), err)
	}
}

// TestHTMLBounded: a page keeps at most maxPageProcesses processes, the
// newest, and says how many it let go.
func TestHTMLBounded(t *testing.T) {
	h := NewHTML(HTMLOptions{})
	for pid := range uint32(maxPageProcesses + 5) {
		if err := h.Summary(findings.Summary{Process: findings.Process{PID: pid + 1, Executable: "short"}}); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := h.Write(&b); err != nil {
		t.Fatal(err)
	}
	doc := parsePage(t, b.String())
	var pids []string
	walk(doc, func(n *html.Node) {
		if v, ok := attr(n, "data-pid"); ok {
			pids = append(pids, v)
		}
	})
	if len(pids) != maxPageProcesses || pids[0] != "6" {
		t.Errorf("%d processes from pid %s, want %d from pid 6", len(pids), pids[0], maxPageProcesses)
	}
	if !strings.Contains(textOf(doc), "5 older processes are not shown") {
		t.Errorf("the page does not say it let 5 processes go")
	}
}
