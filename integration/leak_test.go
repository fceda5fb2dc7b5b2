package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// secretRun is the output of one ctxwatch run on the secret program.
type secretRun struct {
	name                   string
	stdout, stderr, report string
}

// runSecret runs ctxwatch with args on testdata/secret (reading its
// secret from file), which does units units of work, and returns all that
// ctxwatch wrote: standard output and error, and its --output file if
// args name one.
func runSecret(t *testing.T, name, file string, units int, env []string, args ...string) secretRun {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "ctxwatch"), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(strings.Repeat("go\n", units))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: ctxwatch %v: %v; stderr:\n%s", name, args, err, stderr.String())
	}
	r := secretRun{name: name, stdout: stdout.String(), stderr: stderr.String()}
	for i, a := range args {
		if a == "--output" {
			data, err := os.ReadFile(args[i+1])
			if err != nil {
				t.Fatal(err)
			}
			r.report = string(data)
		}
	}
	want := fmt.Sprintf("secret: units %d kept %d", units, units)
	if !strings.Contains(r.stdout, want) && !strings.Contains(r.report, want) {
		t.Fatalf("%s: the program did not say %q: stdout %q", name, want, r.stdout)
	}
	return r
}

// TestNoSecretLeaks: context values under keys that are not trace keys
// never leave the target. testdata/secret keeps a random secret under a
// string key, a struct key, as []byte, inside a struct, and as a string
// key itself, in every context of its traced work, whose goroutines
// ctxwatch reports (a kept trace, lost-at-spawn, new-root). The secret,
// and its hex and base64 forms, must be in no output: the table, JSON
// lines, --verbose logs, and the break spans and resources Jaeger stored.
// The trace values under the trace key are in them, and declaring the
// secret's key a trace key brings the secret out: the test sees a value
// when one is reported.
func TestNoSecretLeaks(t *testing.T) {
	requireRoot(t)
	j := startJaeger(t)
	dir := t.TempDir()
	secret := "s3cr3t-" + rand.Text()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	leaks := leakFinder(secret)
	service := fmt.Sprintf("secret-%d", time.Now().UnixNano())
	target := []string{"env", "OTEL_SERVICE_NAME=" + service, filepath.Join(bin, "secret"), file}
	const units = 5
	key := []string{"--verbose", "--trace-key", "string=trace_id"}
	otlp := []string{"--otlp-endpoint", "http://" + j.http, "--otlp-protocol", "http/protobuf", "--otlp-rate", "1000"}
	noMetrics := []string{"OTEL_METRICS_EXPORTER=none"} // Jaeger takes traces only

	var runs []secretRun
	jsonOut := filepath.Join(dir, "report.json")
	runs = append(runs, runSecret(t, "json+otlp", file, units, noMetrics,
		append(append(append(key, otlp...), "--format", "json", "--output", jsonOut, "--"), target...)...))
	runs = append(runs, runSecret(t, "table", file, units, nil,
		append(append(key, "--format", "table", "--output", filepath.Join(dir, "report.txt"), "--"), target[2:]...)...))
	// --pid, the report on ctxwatch's own standard output.
	tgt := exec.Command(filepath.Join(bin, "secret"), file)
	stdin, err := tgt.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	tgtOut := &syncBuffer{}
	tgt.Stdout = tgtOut
	if err := tgt.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tgt.Process.Kill() })
	waitFor(t, "the secret program to start", 10*time.Second, func() bool { return strings.Contains(tgtOut.String(), "ready") })
	cw := exec.Command(filepath.Join(bin, "ctxwatch"), append(key, "--format", "json", "--overhead-budget", "0", "--pid", fmt.Sprint(tgt.Process.Pid))...)
	var cwOut bytes.Buffer
	cwErr := &syncBuffer{}
	cw.Stdout, cw.Stderr = &cwOut, cwErr
	if err := cw.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ctxwatch to attach", 30*time.Second, func() bool { return strings.Contains(cwErr.String(), "watching pid") })
	fmt.Fprint(stdin, strings.Repeat("go\n", units))
	stdin.Close()
	if err := tgt.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cw.Wait(); err != nil {
		t.Fatalf("ctxwatch --pid: %v; stderr:\n%s", err, cwErr.String())
	}
	runs = append(runs, secretRun{name: "pid", stdout: cwOut.String(), stderr: cwErr.String()})

	// What Jaeger stored: every break span ctxwatch sent, then all of
	// the service's traces and the service list, as raw JSON.
	var sent uint64
	for _, l := range strings.Split(runs[0].report, "\n") {
		var s struct {
			Type   string       `json:"type"`
			Export *exportStats `json:"export"`
		}
		if json.Unmarshal([]byte(l), &s) == nil && s.Type == "summary" && s.Export != nil {
			sent = s.Export.Sent
		}
	}
	if sent == 0 {
		t.Fatalf("no break span was sent to Jaeger; report:\n%s\nstderr:\n%s", runs[0].report, runs[0].stderr)
	}
	waitFor(t, "Jaeger to store the break spans", 30*time.Second, func() bool {
		n := uint64(0)
		for _, tr := range j.traces(t, service) {
			for _, s := range tr.Spans {
				if strings.HasPrefix(s.OperationName, "trace break:") {
					n++
				}
			}
		}
		return n >= sent
	})
	var stored bytes.Buffer
	for _, q := range []string{"/api/services", "/api/traces?limit=10000&lookback=1h&service=" + service} {
		resp, err := http.Get("http://" + j.query + q)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(&stored, resp.Body)
		resp.Body.Close()
	}
	runs = append(runs, secretRun{name: "jaeger", report: stored.String()})

	for _, r := range runs {
		for what, text := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "report": r.report} {
			if found := leaks(text); found != "" {
				t.Errorf("%s: the secret (as %q) is in ctxwatch's %s:\n%s", r.name, found, what, text)
			}
		}
	}

	// The values under the trace key are read and reported: the trace
	// of the first unit, and the new trace its third goroutine started.
	const trace, other = "5eed0000000000000000000000000001", "0de00000000000000000000000000001"
	for _, c := range []struct {
		name, text string
		want       []string
	}{
		{"json", runs[0].report, []string{`"trace_id":"` + trace + `"`, `"other_trace_id":"` + other + `"`, `"kind":"lost-at-spawn"`}},
		{"table", runs[1].report, []string{"lost-at-spawn", "new-root"}},
		{"pid", runs[2].stdout, []string{`"trace_id":"` + trace + `"`}},
		{"jaeger", runs[3].report, []string{trace, "trace break: new-root"}},
	} {
		for _, w := range c.want {
			if !strings.Contains(c.text, w) {
				t.Errorf("%s: %q not reported:\n%s", c.name, w, c.text)
			}
		}
	}
	// The control: with the secret's own key declared a trace key, its
	// value (its first 32 bytes: what a trace label keeps) is reported,
	// and found.
	ctl := runSecret(t, "control", file, 1, nil, "--trace-key", "string=password", "--format", "json", "--", filepath.Join(bin, "secret"), file)
	if leaks(ctl.stdout) == "" {
		t.Errorf("with --trace-key string=password the secret is not reported: the test would not see a leak:\n%s", ctl.stdout)
	}
}

// leakFinder returns a func that finds secret in a text, or a part of it
// (12 characters of it: a trace label keeps a value's first 32 bytes),
// plain, in hex or in base64 (at each alignment). It returns what it
// found, "" for nothing.
func leakFinder(secret string) func(string) string {
	const n = 12
	var needles []string
	windows := func(s string, n int) {
		for i := 0; i+n <= len(s); i++ {
			needles = append(needles, s[i:i+n])
		}
	}
	windows(secret, n)
	windows(hex.EncodeToString([]byte(secret)), 2*n)
	windows(strings.ToUpper(hex.EncodeToString([]byte(secret))), 2*n)
	for k := range 3 {
		windows(base64.StdEncoding.EncodeToString([]byte(secret[k:])), 4*n/3)
		windows(base64.RawURLEncoding.EncodeToString([]byte(secret[k:])), 4*n/3)
	}
	return func(text string) string {
		for _, s := range needles {
			if strings.Contains(text, s) {
				return s
			}
		}
		return ""
	}
}

// TestEscapedNames: names that come from the target, its source file
// names (in its pclntab) and its executable's name, reach a table only
// escaped, a row staying one line with no control character, and reach
// JSON exactly. The input is the waiter built from a directory and a
// file whose names hold a terminal escape, a newline and a right-to-left
// override, into an executable named with an escape and a newline.
func TestEscapedNames(t *testing.T) {
	requireRoot(t)
	data, err := os.ReadFile(input("evil.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names evilNames
	if err := json.Unmarshal(data, &names); err != nil {
		t.Fatal(err)
	}
	exe := input(filepath.Join("evil", names.Exe))
	const units = 3
	run := func(args ...string) (string, string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "report")
		cmd := exec.Command(filepath.Join(bin, "ctxwatch"), append(append([]string{"--verbose", "--trace-key", "type=main.traceKey", "--output", out}, args...), "--", exe)...)
		cmd.Stdin = strings.NewReader(strings.Repeat("go\n", units))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("ctxwatch %v: %v; stderr:\n%s", args, err, stderr.String())
		}
		report, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(report), stderr.String()
	}
	noControl := func(what, text string) {
		t.Helper()
		for _, c := range text {
			if c < ' ' && c != '\n' || c == 0x7f || c == '\u202e' {
				t.Errorf("%s holds %q raw:\n%s", what, c, text)
				return
			}
		}
	}

	table, stderr := run("--format", "table")
	noControl("the table", table)
	noControl("--verbose's log", stderr)
	base := `wait\x1b[31m\ner.go:`
	rows := 0
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, "ctxwatch summary:") && !strings.Contains(l, `evil\x1b[2J\nexe`) {
			t.Errorf("summary line %q does not name the executable escaped", l)
		}
		if strings.HasPrefix(l, "main.handle ") || strings.HasPrefix(l, "lost-at-spawn ") {
			rows++
			if strings.Count(l, base) != strings.Count(l, "main.") {
				t.Errorf("row %q: want each site as main.F %s<line>", l, base)
			}
		}
	}
	if rows != 2 {
		t.Errorf("want a spawn site row and a break row, got %d:\n%s", rows, table)
	}
	if !strings.Contains(stderr, `evil\x1b[2J\nexe`) {
		t.Errorf("--verbose does not name the executable escaped:\n%s", stderr)
	}

	report, _ := run("--format", "json")
	_, sums := readReportText(t, report)
	if len(sums) != 1 || sums[0].Executable != names.Exe || len(sums[0].SpawnSites) != 1 || len(sums[0].Breaks) != 1 {
		t.Fatalf("want one summary of %q with a spawn site and a break:\n%s", names.Exe, report)
	}
	if f := sums[0].SpawnSites[0].Site.File; f != names.File {
		t.Errorf("spawn site file %q, want %q", f, names.File)
	}
	if b := sums[0].Breaks[0]; b.Site.File != names.File || b.Count != units {
		t.Errorf("break %+v, want %d at %q", b, units, names.File)
	}
}

// readReportText reads JSON lines as readReport does, from a string.
func readReportText(t *testing.T, text string) ([]breakLine, []summaryLine) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return readReport(t, path)
}
