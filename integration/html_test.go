package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// chromium is the browser the page is checked in: Debian's package, its
// binary run directly rather than through /usr/bin/chromium, whose wrapper
// adds flags of its own (GPU rasterization, the packaged extensions) that
// a headless DOM dump does not want.
const chromium = "/usr/lib/chromium/chromium"

// browserTries is how often the page is opened when Chromium itself dies
// by a signal. Chromium 148 headless segfaulted once in a fresh CI run on
// a page it had read in a hundred runs before; a browser crash says nothing
// about the page, so it is retried and logged, and a page that cannot be
// read in three tries fails the test.
const browserTries = 3

// TestHTMLReport: the page ctxwatch --html writes, as a browser builds it,
// lists exactly the spawn sites, counts and breaks of the JSON summary of
// the same run, draws an edge to each, links each trace id, shows the
// source lines of each site, and runs no script; ctxwatch report makes
// the same page, offline, from the saved JSON lines. For fireforget
// (breaks of spawned goroutines) and staleparent (breaks of the goroutine
// that checks, stale-parent).
func TestHTMLReport(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the page is checked in headless Chromium: apt-get install chromium (%v)", err)
	}
	for _, name := range []string{"fireforget", "staleparent"} {
		t.Run(name, func(t *testing.T) { htmlReport(t, name) })
	}
}

func htmlReport(t *testing.T, name string) {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "examples", name, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	const traceURL = "http://jaeger.invalid:16686/trace/{trace_id}"
	page := filepath.Join(t.TempDir(), "live.html")
	args := append(sourceFlags(t, src), "--html", page, "--trace-url", traceURL, "--", filepath.Join(bin, name))
	r := ctxwatch(t, args...)
	if r.code != 0 {
		t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
	}
	if len(r.summaries) != 1 {
		t.Fatalf("%d summaries, want 1 (%s)", len(r.summaries), name)
	}
	sum := r.summaries[0]
	if len(sum.Breaks) == 0 || len(sum.SpawnSites) == 0 {
		t.Fatalf("%s gave no break or no spawn site: %+v", name, sum)
	}
	live := readDOM(t, page)
	checkPage(t, live, sum, r.breaks, strings.TrimSuffix(traceURL, "{trace_id}"))

	t.Run("offline", func(t *testing.T) {
		page2 := filepath.Join(t.TempDir(), "offline.html")
		cmd := exec.Command(filepath.Join(bin, "ctxwatch"), "report", "--html", page2, "--trace-url", traceURL, r.report)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ctxwatch report: %v\n%s", err, out)
		}
		offline := readDOM(t, page2)
		checkPage(t, offline, sum, r.breaks, strings.TrimSuffix(traceURL, "{trace_id}"))
		if d := diffPages(live, offline); d != "" {
			t.Errorf("ctxwatch report's page differs from --html's:\n%s", d)
		}
	})
}

// domPage is what a page says, read from the DOM the browser built.
type domPage struct {
	pids    []string
	runs    []string // the run lines
	sites   []string // FILE:LINE traced kept lost new-root not-judged
	breaks  []string // kind FILE:LINE count trace
	nodes   []string // flow graph nodes of spawn and break sites: class FILE:LINE
	edges   []string // flow graph edges: from -> to
	sources []string // FILE:LINE of each source excerpt
	links   []string // hrefs that leave the page
	scripts int
}

// readDOM opens page in headless Chromium and reads what it shows.
func readDOM(t *testing.T, page string) domPage {
	t.Helper()
	var stdout bytes.Buffer
	for try := 1; ; try++ {
		var stderr bytes.Buffer
		err := dumpDOM(t, page, &stdout, &stderr)
		if err == nil {
			break
		}
		var ee *exec.ExitError
		crashed := errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signaled()
		if !crashed || try == browserTries {
			t.Fatalf("chromium --dump-dom %s (try %d of %d): %v\n%s", page, try, browserTries, err, stderr.String())
		}
		t.Logf("chromium died reading %s (%v), try %d of %d; its stderr:\n%s", page, err, try, browserTries, stderr.String())
		stdout.Reset()
	}
	doc, err := html.Parse(&stdout)
	if err != nil {
		t.Fatalf("parse the DOM chromium dumped: %v", err)
	}
	var p domPage
	visit(doc, func(n *html.Node) {
		a := func(k string) string {
			for _, at := range n.Attr {
				if at.Key == k {
					return at.Val
				}
			}
			return ""
		}
		classes := strings.Fields(a("class"))
		has := func(c string) bool { return slices.Contains(classes, c) }
		switch {
		case n.Data == "script":
			p.scripts++
		case n.Data == "section" && has("process"):
			p.pids = append(p.pids, a("data-pid"))
		case n.Data == "p" && has("run"):
			p.runs = append(p.runs, nodeText(n))
		case n.Data == "tr" && has("site"):
			p.sites = append(p.sites, strings.Join([]string{a("data-site"), a("data-traced"), a("data-kept"), a("data-lost"), a("data-newroot"), a("data-notjudged")}, " "))
		case n.Data == "tr" && has("break"):
			p.breaks = append(p.breaks, strings.Join([]string{a("data-kind"), a("data-site"), a("data-count"), a("data-trace")}, " "))
		case n.Data == "g" && has("node") && a("data-site") != "":
			p.nodes = append(p.nodes, classes[1]+" "+a("data-site"))
		case n.Data == "g" && has("edge"):
			p.edges = append(p.edges, a("data-from")+" -> "+a("data-to"))
		case n.Data == "figure" && has("src"):
			p.sources = append(p.sources, a("data-site"))
		case n.Data == "a" && !strings.HasPrefix(a("href"), "#"):
			p.links = append(p.links, a("href"))
		}
	})
	return p
}

func visit(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		visit(c, f)
	}
}

func nodeText(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(nodeText(c))
	}
	return b.String()
}

func siteKey(f frame) string { return fmt.Sprintf("%s:%d", f.File, f.Line) }

// checkPage compares a page with the JSON report of the same run.
func checkPage(t *testing.T, p domPage, sum summaryLine, lines []breakLine, traceLink string) {
	t.Helper()
	if p.scripts != 0 {
		t.Errorf("%d <script> elements in the page", p.scripts)
	}
	if want := []string{fmt.Sprint(sum.PID)}; !slices.Equal(p.pids, want) {
		t.Errorf("processes %q, want %q", p.pids, want)
	}
	if len(p.runs) != 1 || !strings.HasPrefix(p.runs[0], fmt.Sprintf("pid %d %s (go", sum.PID, sum.Executable)) ||
		!strings.Contains(p.runs[0], fmt.Sprintf(", %d events, 0 lost", sum.Events)) {
		t.Errorf("run lines %q", p.runs)
	}

	var sites []string
	for _, s := range sum.SpawnSites {
		notJudged := s.TracedSpawns - min(s.TracedSpawns, s.Propagated+s.Lost+s.NewRoot)
		sites = append(sites, fmt.Sprintf("%s %d %d %d %d %d", siteKey(s.Site), s.TracedSpawns, s.Propagated, s.Lost, s.NewRoot, notJudged))
	}
	if !slices.Equal(p.sites, sites) {
		t.Errorf("spawn sites:\n%s\nwant (the JSON summary's):\n%s", strings.Join(p.sites, "\n"), strings.Join(sites, "\n"))
	}

	var breaks []string
	for _, b := range sum.Breaks {
		breaks = append(breaks, fmt.Sprintf("%s %s %d %s", b.Kind, siteKey(b.Site), b.Count, b.TraceID))
	}
	if !slices.Equal(p.breaks, breaks) {
		t.Errorf("breaks:\n%s\nwant (the JSON summary's):\n%s", strings.Join(p.breaks, "\n"), strings.Join(breaks, "\n"))
	}
	// Each break line is the first occurrence of one of them.
	if len(lines) != len(sum.Breaks) {
		t.Errorf("%d break lines for %d breaks", len(lines), len(sum.Breaks))
	}
	for _, l := range lines {
		prefix := fmt.Sprintf("%s %s ", l.Kind, siteKey(l.Site))
		if !slices.ContainsFunc(p.breaks, func(b string) bool { return strings.HasPrefix(b, prefix) && strings.HasSuffix(b, " "+l.TraceID) }) {
			t.Errorf("break line %s %s (trace %s) is not on the page", l.Kind, siteKey(l.Site), l.TraceID)
		}
		if !slices.Contains(p.links, traceLink+l.TraceID) {
			t.Errorf("trace %s is not linked (links: %q)", l.TraceID, p.links)
		}
	}
	for _, href := range p.links {
		if !strings.HasPrefix(href, traceLink) {
			t.Errorf("link %q leaves the page, not to a trace", href)
		}
	}

	// The flow graph: a node and an incoming edge for every spawn site
	// and every break site; source lines for each (the file is here).
	for _, s := range sum.SpawnSites {
		checkGraphSite(t, p, "site", siteKey(s.Site))
	}
	for _, b := range sum.Breaks {
		checkGraphSite(t, p, "breaksite", siteKey(b.Site))
		if !slices.Contains(p.sources, siteKey(b.Site)) {
			t.Errorf("no source lines for break site %s (excerpts: %q)", siteKey(b.Site), p.sources)
		}
	}
}

func checkGraphSite(t *testing.T, p domPage, class, site string) {
	t.Helper()
	if !slices.Contains(p.nodes, class+" "+site) {
		t.Errorf("flow graph: no %s node %s (nodes: %q)", class, site, p.nodes)
	}
	if !slices.ContainsFunc(p.edges, func(e string) bool { return strings.HasSuffix(e, " -> "+site) }) {
		t.Errorf("flow graph: no edge to %s (edges: %q)", site, p.edges)
	}
}

// diffPages says how two pages' contents differ, or "" when they do not.
func diffPages(a, b domPage) string {
	var out []string
	for _, c := range []struct {
		what string
		a, b []string
	}{
		{"processes", a.pids, b.pids}, {"run lines", a.runs, b.runs}, {"spawn sites", a.sites, b.sites},
		{"breaks", a.breaks, b.breaks}, {"graph nodes", a.nodes, b.nodes}, {"graph edges", a.edges, b.edges},
		{"source excerpts", a.sources, b.sources}, {"links", a.links, b.links},
	} {
		if !slices.Equal(c.a, c.b) {
			out = append(out, fmt.Sprintf("%s: %q vs %q", c.what, c.a, c.b))
		}
	}
	return strings.Join(out, "\n")
}

// dumpDOM runs headless Chromium once on page, the DOM it built to stdout.
func dumpDOM(t *testing.T, page string, stdout, stderr *bytes.Buffer) error {
	ctx, cancel := context.WithTimeout(context.Background(), slowed(2*time.Minute))
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--disable-dev-shm-usage", "--disable-extensions", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+page)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		// Killed for taking too long: not a crash, and not retried.
		return fmt.Errorf("no DOM within %v: %w", slowed(2*time.Minute), ctx.Err())
	}
	return err
}
