//go:build realprograms

package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// alertmanagerProgram is the Prometheus Alertmanager: log/slog through
// promslog, OpenTelemetry tracing configured in its own file (an OTLP/HTTP
// exporter, W3C propagation), every API route in otelhttp and each API v2
// handler in a span of its own (api/v2/api.go). Its handlers log with a
// logger made by With, never with the request's context: each record they
// write inside a request is a log-without-trace at the handler's line.
//
// v0.31.1 is the newest release the module proxy serves that builds from
// its zip: v0.32 and later embed the UI's built assets (ui/app/dist),
// which the zip does not hold.
var alertmanagerProgram = realProgram{name: "alertmanager", version: "v0.31.1", pkg: "github.com/prometheus/alertmanager/cmd/alertmanager"}

// alertmanagerRounds of the seven requests of amRound.
const alertmanagerRounds = 3

// amAPI is the file of the API v2 handlers in the module at its version.
const amAPI = "alertmanager@v0.31.1/api/v2/api.go"

// amRequest is a request of a round: what it is, the answer Alertmanager
// gives, the handler's span, and the line of api/v2/api.go whose
// logger.Error it writes (0 for none: it writes no record at all, at the
// default level info).
type amRequest struct {
	what         string
	method, path string
	body         string
	status       int
	handler      string
	logLine      int
}

// amLogSites are the handler of each line that writes a record in the
// requests of amRound (read in api/v2/api.go of v0.31.1; each is
// logger.Error(...) on requestLogger's With logger, no context).
var amLogSites = map[int]string{
	391: "github.com/prometheus/alertmanager/api/v2.(*API).postAlertsHandler",    // Failed to validate alerts
	655: "github.com/prometheus/alertmanager/api/v2.(*API).getSilenceHandler",    // Failed to find silence
	676: "github.com/prometheus/alertmanager/api/v2.(*API).deleteSilenceHandler", // Failed to expire silence
	701: "github.com/prometheus/alertmanager/api/v2.(*API).postSilencesHandler",  // start time must be before end time
	707: "github.com/prometheus/alertmanager/api/v2.(*API).postSilencesHandler",  // end time can't be in the past
}

// amRound is one round of requests, round i: two that succeed and log
// nothing, five that fail and log once each, at a line of amLogSites.
func amRound(i int, now time.Time) []amRequest {
	ts := func(d time.Duration) string { return now.Add(d).UTC().Format(time.RFC3339) }
	silence := func(from, to time.Duration) string {
		return fmt.Sprintf(`{"matchers":[{"name":"alertname","value":"A","isRegex":false}],"createdBy":"ctxwatch","comment":"round %d","startsAt":%q,"endsAt":%q}`,
			i, ts(from), ts(to))
	}
	id := func(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", 1000*i+n) }
	return []amRequest{
		{"valid alert", "POST", "/api/v2/alerts", fmt.Sprintf(`[{"labels":{"alertname":"A","round":"%d"}}]`, i), 200, "api.postAlertsHandler", 0},
		{"alert ending before it starts", "POST", "/api/v2/alerts", fmt.Sprintf(`[{"labels":{"alertname":"B"},"startsAt":%q,"endsAt":%q}]`, ts(time.Hour), ts(0)), 400, "api.postAlertsHandler", 391},
		{"unknown silence", "GET", "/api/v2/silence/" + id(1), "", 404, "api.getSilenceHandler", 655},
		{"expire unknown silence", "DELETE", "/api/v2/silence/" + id(2), "", 404, "api.deleteSilenceHandler", 676},
		{"silence ending before it starts", "POST", "/api/v2/silences", silence(time.Hour, 0), 400, "api.postSilencesHandler", 701},
		{"silence in the past", "POST", "/api/v2/silences", silence(-2*time.Hour, -time.Hour), 400, "api.postSilencesHandler", 707},
		{"valid silence", "POST", "/api/v2/silences", silence(0, time.Hour), 200, "api.postSilencesHandler", 0},
	}
}

// amRun is a run of Alertmanager: its requests, and the records it wrote
// while it served them (its own output, promslog's logfmt).
type amRun struct {
	realRun
	sent    []amRequest // sent[i] is reqs[i]
	records []amRecord
}

// amRecord is a record Alertmanager wrote: its level, its source
// (promslog's file:line of the call, the file's base name) and message.
type amRecord struct{ level, source, msg string }

var amRecordRE = regexp.MustCompile(`^time=\S+ level=(\S+) source=(\S+) msg=("(?:[^"\\]|\\.)*"|\S+)`)

// amRecords parses the records in Alertmanager's output.
func amRecords(out string) []amRecord {
	var recs []amRecord
	for _, line := range strings.Split(out, "\n") {
		if m := amRecordRE.FindStringSubmatch(line); m != nil {
			recs = append(recs, amRecord{level: m[1], source: m[2], msg: strings.Trim(m[3], `"`)})
		}
	}
	return recs
}

// TestRealAlertmanager: Alertmanager's truth, established without
// ctxwatch and written in docs/realprograms.md: each request's trace holds
// its handler's span; the five failing requests of a round each write one
// ERROR record, at the handler's line (amLogSites), with no context (read
// in the code; api/v2 has no *Context call), inside the handler's span;
// the two that succeed write none; Jaeger holds no trace but the
// requests'. Under ctxwatch the same, and ctxwatch's log sites are those
// five lines, each with one record per round inside a trace, none with
// it: five log-without-trace breaks, each counted once per round, whose
// break spans sit in the traces of the requests that logged; no other
// break, no verdict at any spawn site.
func TestRealAlertmanager(t *testing.T) {
	requireRoot(t)
	exe := alertmanagerProgram.binary(t)
	for _, watched := range []bool{false, true} {
		t.Run(runName(watched), func(t *testing.T) {
			r := runAlertmanager(t, exe, watched)
			checkAlertmanagerTruth(t, r)
			if watched {
				r.agree(t, nil)
				checkAlertmanagerLogs(t, r)
			}
		})
	}
}

func runAlertmanager(t *testing.T, exe string, watched bool) *amRun {
	t.Helper()
	j := startJaeger(t)
	addr := freePorts(t, 1)[0]
	dir := t.TempDir()
	// A route to a receiver with no integration; group_wait of an hour, so
	// that no aggregation group flushes while the test runs (a flush is
	// work of its own, in a trace of its own: docs/realprograms.md).
	config := fmt.Sprintf(`route:
  receiver: "null"
  group_wait: 1h
receivers:
  - name: "null"
tracing:
  client_type: http
  endpoint: %s
  insecure: true
  sampling_fraction: 1.0
`, j.http)
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startService(t, j, watched, []string{"OTEL_BSP_SCHEDULE_DELAY=200"}, exe,
		"--config.file", cfg, "--storage.path", filepath.Join(dir, "data"),
		"--web.listen-address", addr, "--cluster.listen-address=")
	s.listening(t, addr)
	base := "http://" + addr
	// Ready once the configuration is loaded (tracing installed with it).
	waitFor(t, "Alertmanager to be ready", 60*time.Second, func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	r := &amRun{}
	from := len(s.log.String()) // the records of startup are not the requests'
	for i := range alertmanagerRounds {
		for _, q := range amRound(i, time.Now()) {
			r.sent = append(r.sent, q)
			ct := ""
			if q.body != "" {
				ct = "application/json"
			}
			d := sendTracedStatus(t, q.method, base+q.path, ct, []byte(q.body), q.status)
			d.what = q.what + ": " + d.what
			r.reqs = append(r.reqs, d)
		}
	}
	r.traces = j.settled(t, r.reqs, 2*time.Second)
	r.records = amRecords(s.log.String()[from:]) // before the shutdown's
	r.finish(t, j, s, 2*time.Second)
	return r
}

// checkAlertmanagerTruth checks a run against Alertmanager's truth.
func checkAlertmanagerTruth(t *testing.T, r *amRun) {
	t.Helper()
	nt, ns := outsideRequests(r.traces, r.reqs)
	t.Logf("%d requests, %d traces, %d spans; outside the requests' traces: %d traces, %d spans; %d orphans",
		len(r.reqs), len(r.traces), spanCount(r.traces), nt, ns, len(r.orphans))
	if len(r.orphans) != 0 {
		t.Errorf("Jaeger shows %d orphan roots, Alertmanager's truth is 0", len(r.orphans))
	}
	// Outside the requests' traces, only the readiness probes' (untraced
	// requests, so SERVER roots of their own).
	driver := map[string]bool{}
	for _, q := range r.reqs {
		driver[q.traceID] = true
	}
	for id, tr := range r.traces {
		if driver[id] {
			continue
		}
		t.Logf("outside the requests: trace %s: %s", id, spanNames(tr))
		if len(tr.Spans) != 1 || tr.Spans[0].tag("span.kind") != "server" || !strings.Contains(tr.Spans[0].OperationName, "/-/ready") {
			t.Errorf("trace %s is no request's and not a readiness probe's: %s", id, spanNames(tr))
		}
	}
	for i, q := range r.reqs {
		tr := r.traces[q.traceID]
		if i < len(r.reqs)/alertmanagerRounds { // the first round
			t.Logf("%s: trace %s: %s", q.what, q.traceID, spanNames(tr))
		}
		hs := tr.named(r.sent[i].handler)
		if len(hs) != 1 {
			t.Errorf("%s: trace %s has %d spans %q, want 1 (%s)", q.what, q.traceID, len(hs), r.sent[i].handler, spanNames(tr))
			continue
		}
		p := hs[0].ref("CHILD_OF")
		if p == nil || tr.span(p.SpanID) == nil || tr.span(p.SpanID).tag("span.kind") != "server" {
			t.Errorf("%s: the handler's span %q is not the child of a SERVER span of its trace", q.what, r.sent[i].handler)
		}
	}
	// The records written while the requests ran: one per failing request,
	// at its handler's line, and nothing else.
	want := map[string]int{}
	for _, q := range r.sent {
		if q.logLine != 0 {
			want[fmt.Sprintf("api.go:%d", q.logLine)]++
		}
	}
	got := map[string]int{}
	for _, rec := range r.records {
		got[rec.source]++
		if rec.level != "ERROR" || want[rec.source] == 0 {
			t.Errorf("Alertmanager wrote %s %q at %s while the requests ran; the truth is one ERROR per failing request, at its handler's line (%v)", rec.level, rec.msg, rec.source, want)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records written by source: %v, want %v", got, want)
	}
	t.Logf("records written by source: %v", got)
}

// checkAlertmanagerLogs checks ctxwatch's report against the truth, and
// against the records Alertmanager itself wrote in the same run.
func checkAlertmanagerLogs(t *testing.T, r *amRun) {
	t.Helper()
	written := map[int]uint64{} // by line of api.go, from Alertmanager's output
	for _, rec := range r.records {
		var line int
		if _, err := fmt.Sscanf(rec.source, "api.go:%d", &line); err == nil {
			written[line]++
		}
	}
	sum := r.summary
	sites := map[int]logSite{}
	for _, ls := range sum.LogSites {
		t.Logf("log site %s:%d (%s): %d in a trace, %d with it, %d without",
			ls.Site.File, ls.Site.Line, ls.Site.Function, ls.InsideTrace, ls.WithTrace, ls.WithoutTrace)
		fn, ok := amLogSites[ls.Site.Line]
		if !ok || ls.Site.Function != fn || !strings.HasSuffix(ls.Site.File, amAPI) {
			t.Errorf("log site %s:%d (%s) is none of the lines that log in a request (%s: %v)", ls.Site.File, ls.Site.Line, ls.Site.Function, amAPI, amLogSites)
			continue
		}
		sites[ls.Site.Line] = ls
	}
	for line := range amLogSites {
		ls := sites[line]
		want := [3]uint64{alertmanagerRounds, 0, alertmanagerRounds}
		if got := [3]uint64{ls.InsideTrace, ls.WithTrace, ls.WithoutTrace}; got != want || written[line] != alertmanagerRounds {
			t.Errorf("log site api.go:%d: %v in a trace, with it, without; Alertmanager wrote %d records there; the truth is %v and %d",
				line, got, written[line], want, alertmanagerRounds)
		}
	}
	// The breaks: log-without-trace at each of those lines, once a round,
	// and nothing else.
	counted := map[int]uint64{}
	for _, b := range sum.Breaks {
		t.Logf("summary: %d × %s at %s:%d (%s)", b.Count, b.Kind, b.Site.File, b.Site.Line, b.Site.Function)
		if b.Kind != "log-without-trace" || amLogSites[b.Site.Line] != b.Site.Function || !strings.HasSuffix(b.Site.File, amAPI) {
			t.Errorf("summary: %d × %s at %s:%d (%s); the truth has only log-without-trace at %s %v", b.Count, b.Kind, b.Site.File, b.Site.Line, b.Site.Function, amAPI, lines(amLogSites))
			continue
		}
		counted[b.Site.Line] += b.Count
		if len(b.Stack) == 0 || b.Stack[0] != b.Site {
			t.Errorf("summary: the stack of the break at api.go:%d does not start at its line: %v", b.Site.Line, b.Stack)
		}
		if len(b.Spawn) != 0 {
			t.Errorf("summary: the break at api.go:%d has a spawn stack %v; the handler's goroutine owns its trace", b.Site.Line, b.Spawn)
		}
	}
	for line := range amLogSites {
		if counted[line] != alertmanagerRounds {
			t.Errorf("summary: %d log-without-trace at api.go:%d, want %d (one a round)", counted[line], line, alertmanagerRounds)
		}
	}
	seen := map[int]bool{}
	for _, b := range r.breaks {
		if b.Kind != "log-without-trace" || amLogSites[b.Site.Line] != b.Site.Function || seen[b.Site.Line] {
			t.Errorf("break line %s at %s:%d (%s): not one of the five log-without-trace lines, or twice", b.Kind, b.Site.File, b.Site.Line, b.Site.Function)
		}
		seen[b.Site.Line] = true
	}
	if len(seen) != len(amLogSites) {
		t.Errorf("%d break lines for %d log sites", len(seen), len(amLogSites))
	}
	for _, sp := range sum.SpawnSites {
		if sp.Propagated != 0 || sp.Lost != 0 || sp.NewRoot != 0 {
			t.Errorf("spawn site %s:%d: %d propagated, %d lost, %d new roots; the truth has no goroutine of Alertmanager that uses the trace while the test runs",
				sp.Site.File, sp.Site.Line, sp.Propagated, sp.Lost, sp.NewRoot)
		}
	}
	for _, h := range sum.Handoffs {
		t.Errorf("handoff site %s:%d: %d handed; the truth has none seen (Alertmanager sends alerts to its dispatcher in a multi-case select)", h.Site.File, h.Site.Line, h.Handed)
	}
	// Each break span is in the trace of a request that logged at its line.
	perLine := map[int]int{}
	for i, q := range r.reqs {
		for _, s := range r.traces[q.traceID].named("trace break: log-without-trace") {
			line := fmt.Sprint(s.tag("code.line.number"))
			if line != fmt.Sprint(r.sent[i].logLine) {
				t.Errorf("%s: a log-without-trace break span at line %s in its trace; it logged at line %d", q.what, line, r.sent[i].logLine)
			}
			perLine[r.sent[i].logLine]++
		}
	}
	for line := range amLogSites {
		if perLine[line] != alertmanagerRounds {
			t.Errorf("%d break spans at api.go:%d in the requests' traces, want %d", perLine[line], line, alertmanagerRounds)
		}
	}
}

// lines lists the lines of a site map, sorted.
func lines(sites map[int]string) []int {
	var out []int
	for l := range sites {
		out = append(out, l)
	}
	sort.Ints(out)
	return out
}
