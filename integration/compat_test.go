package integration

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ctxwatch/ctxwatch/integration/internal/compat"
)

// The compatibility matrix: the example suite, checked as TestExamples
// checks it, against targets built with every supported Go toolchain in
// each build mode users ship.
//
//	CTXWATCH_COMPAT=ci   (default) the oldest, two middle and the newest toolchain
//	CTXWATCH_COMPAT=all  every toolchain of compatToolchains
//	CTXWATCH_COMPAT=go1.19.13            one toolchain (go1.N.M)
//	CTXWATCH_COMPAT=go1.19.13,go1.20.14  these toolchains, in this order
//	CTXWATCH_COMPAT_DOC=docs/compatibility.md  also write the result table there
//
// Toolchains are fetched by the go command (GOTOOLCHAIN=go1.N.M) through
// the module proxy and kept in GOMODCACHE; their standard library builds
// are kept in the build cache.

var compatToolchains = []string{
	"go1.17.13", "go1.18.10", "go1.19.13", "go1.20.14", "go1.21.13", "go1.22.12",
	"go1.23.12", "go1.24.13", "go1.25.14", "go1.26.8", "go1.27.4",
}

// compatCI is the subset run on every change: oldest, two middle, newest.
var compatCI = []string{"go1.17.13", "go1.21.13", "go1.24.13", "go1.27.4"}

// compatModes are the build modes: the go build flags and CGO_ENABLED.
var compatModes = []struct {
	name  string
	flags []string
	cgo   bool
}{
	{"default", nil, false},
	{"stripped", []string{"-ldflags=-s -w"}, false},
	{"pie", []string{"-buildmode=pie"}, false},
	{"cgo", nil, true},
}

// compatExamples are the examples of the matrix. The dependency-free ones
// build with every toolchain; errgroup needs golang.org/x/sync (an old
// release for old toolchains); the OTel ones need the OTel SDK, whose
// release of go.mod old toolchains cannot build: they get an older release
// of ctxwatch's layout table (compat.OTelFor), and none before Go 1.19.
var compatExamples = []string{
	"closure", "background", "argument", "middleware", "collision", "storm", "worker",
	"errgroup", "otelspans", "otelhttp",
}

// cgoFile makes an example a cgo program that calls C once, at start.
const cgoFile = `//go:build cgo
// +build cgo

package main

// static int ctxcompat_c_call(int x) { return x + 1; }
import "C"

func init() {
	if C.ctxcompat_c_call(1) != 2 {
		panic("cgo call failed")
	}
}
`

// compatModule is the module path of the build directory. Its first
// element has a dot, as a module path outside the standard library should:
// the go command takes a dotless import path for a possible standard
// library package and looks for it in GOROOT/src first. Go 1.19's module
// index gets that look-up wrong when GOROOT is inside GOMODCACHE, as it is
// for a toolchain fetched through GOTOOLCHAIN (golang.org/toolchain): it
// indexes GOROOT/src as a module of the module cache, whose index answers
// every path, found or not, so each package of a dotless module
// ("ctxcompat/examples/closure") counts as standard and fails to load with
// `import "": import of unknown directory`. Go 1.20 leaves GOROOT/src out
// of that index; a dotted path keeps 1.19 out of the look-up.
const compatModule = "example.com/ctxcompat"

// cell is the result of one toolchain × mode.
type cell struct {
	pass, fail []string
	err        string // the build failed as a whole
}

type compatResults struct {
	mu    sync.Mutex
	cells map[string]map[string]*cell // toolchain, mode
	na    map[string][]string         // toolchain: examples not built, with why
}

func (r *compatResults) cell(tc, mode string) *cell {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cells[tc] == nil {
		r.cells[tc] = map[string]*cell{}
	}
	if r.cells[tc][mode] == nil {
		r.cells[tc][mode] = &cell{}
	}
	return r.cells[tc][mode]
}

func TestCompat(t *testing.T) {
	requireRoot(t)
	if os.Getenv("CTXWATCH_TEST_BIN") != "" {
		t.Skip("prebuilt binaries (vmtest): the matrix needs the go command to build targets")
	}
	toolchains := compatCI
	switch sel := os.Getenv("CTXWATCH_COMPAT"); sel {
	case "", "ci":
	case "all":
		toolchains = compatToolchains
	default:
		toolchains = strings.Split(sel, ",")
		for _, tc := range toolchains {
			if !strings.HasPrefix(tc, "go1.") || goMinorOf(tc) == 0 {
				t.Fatalf("CTXWATCH_COMPAT=%s: want ci, all or a comma-separated list of toolchains such as go1.19.13; %q is none", sel, tc)
			}
		}
	}
	start := time.Now()
	res := &compatResults{cells: map[string]map[string]*cell{}, na: map[string][]string{}}
	// CTXWATCH_COMPAT_ORDER=newest runs the newest toolchains first; the
	// table keeps its order.
	order := slices.Clone(toolchains)
	if os.Getenv("CTXWATCH_COMPAT_ORDER") == "newest" {
		slices.Reverse(order)
	}
	for _, tc := range order {
		t.Run(tc, func(t *testing.T) { compatToolchain(t, tc, res) })
		// Written after each toolchain: a run cut short leaves a true
		// table, its rows not yet run marked so.
		if doc := os.Getenv("CTXWATCH_COMPAT_DOC"); doc != "" {
			old, _ := os.ReadFile(doc)
			if err := os.WriteFile(doc, append(compatDoc(toolchains, res, time.Since(start)), arm64Section(old)...), 0o644); err != nil {
				t.Error(err)
			}
		}
	}
}

func goMinorOf(tc string) int {
	parts := strings.Split(strings.TrimPrefix(tc, "go"), ".")
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(parts[1])
	return n
}

// compatEnv is the environment of a build with toolchain tc. GOENV=off
// keeps the user's go env file (whose GOFLAGS old toolchains may reject)
// out; GOFLAGS is set here instead.
func compatEnv(tc string, cgo bool) []string {
	env := []string{"GOTOOLCHAIN=" + tc, "GOENV=off", "GOFLAGS=-mod=mod", "GOOS=linux", "GOARCH=" + targetArch, "CGO_ENABLED=0"}
	if cgo {
		env[len(env)-1] = "CGO_ENABLED=1"
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOTOOLCHAIN", "GOENV", "GOFLAGS", "GOOS", "GOARCH", "CGO_ENABLED":
			continue
		}
		env = append(env, kv)
	}
	// With GOENV=off the go env file's settings are gone: keep the caches.
	for _, k := range []string{"GOMODCACHE", "GOCACHE", "GOPROXY", "GOSUMDB"} {
		if os.Getenv(k) == "" {
			if out, err := exec.Command("go", "env", k).Output(); err == nil {
				env = append(env, k+"="+strings.TrimSpace(string(out)))
			}
		}
	}
	return env
}

// compatModuleDir writes a module holding the examples toolchain tc can
// build, and returns it with the examples it holds.
func compatModuleDir(t *testing.T, tc string, res *compatResults) (string, []string) {
	t.Helper()
	minor := goMinorOf(tc)
	// A fixed directory, so that the build cache (which keys cgo packages
	// by directory) serves the next run.
	// Another run of these tests (make test elsewhere) may use it: hold
	// a lock on it for the toolchain's whole test.
	dir := filepath.Join(os.TempDir(), "ctxwatch-compat", tc)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() }) // releases the lock
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	write := func(rel, text string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mainMod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	// The main module's go directive decides whether the examples are
	// built with go.mod's requirements (its OTel SDK and x/sync) or with
	// older releases.
	modGo := 0
	for _, l := range strings.Split(string(mainMod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			modGo = goMinorOf("go" + strings.TrimSpace(v))
		}
	}
	var gomod string
	var examples []string
	if minor >= modGo {
		// A toolchain new enough for go.mod builds the examples with the
		// module's own requirements.
		gomod = strings.Replace(string(mainMod), "module github.com/ctxwatch/ctxwatch", "module "+compatModule, 1)
		sum, err := os.ReadFile("../go.sum")
		if err != nil {
			t.Fatal(err)
		}
		write("go.sum", string(sum))
		examples = compatExamples
	} else {
		gomod = fmt.Sprintf("module %s\n\ngo 1.%d\n\nrequire golang.org/x/sync v0.1.0\n", compatModule, minor)
		// The OTel examples are built against the newest OTel release of
		// the layout table the toolchain builds (compat.OTelReleases).
		// Only the OTel modules the examples import are required; the go
		// command (GOFLAGS=-mod=mod) adds the rest at the versions they
		// require, writes go.sum from the module cache and, from Go 1.21,
		// raises the go directive to the highest one required (1.24.0 for
		// go1.24 with OTel v1.40.0).
		otel, otelOK := compat.OTelFor(minor)
		if otelOK {
			gomod += "\n" + otel.Require()
		}
		for _, ex := range compatExamples {
			// Go 1.17 and 1.18 build no OTel release of the table.
			if strings.HasPrefix(ex, "otel") && !otelOK {
				res.mu.Lock()
				res.na[tc] = append(res.na[tc], ex)
				res.mu.Unlock()
				continue
			}
			examples = append(examples, ex)
		}
		write("internal/atomic/atomic.go", compat.AtomicShim)
	}
	write("go.mod", gomod)
	for _, ex := range examples {
		src, err := os.ReadFile(filepath.Join("..", "examples", ex, "main.go"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := compat.Backport(src, minor, compatModule)
		if err != nil {
			t.Fatalf("%s: %v", ex, err)
		}
		write(filepath.Join("examples", ex, "main.go"), string(out))
		write(filepath.Join("examples", ex, "cgo.go"), cgoFile)
	}
	return dir, examples
}

func compatToolchain(t *testing.T, tc string, res *compatResults) {
	dir, examples := compatModuleDir(t, tc, res)
	for _, mode := range compatModes {
		t.Run(mode.name, func(t *testing.T) {
			c := res.cell(tc, mode.name)
			out := filepath.Join(dir, "bin-"+mode.name)
			args := append([]string{"build"}, mode.flags...)
			args = append(args, "-o", out+"/")
			for _, ex := range examples {
				args = append(args, "./examples/"+ex)
			}
			build := exec.Command("go", args...)
			build.Dir = dir
			build.Env = compatEnv(tc, mode.cgo)
			if msg, err := build.CombinedOutput(); err != nil {
				c.err = "build failed"
				t.Fatalf("go %s with %s: %v\n%s", strings.Join(args, " "), tc, err, msg)
			}
			for _, ex := range examples {
				ok := t.Run(ex, func(t *testing.T) {
					exe := filepath.Join(out, ex)
					checkBuild(t, exe, tc, mode.name)
					src := filepath.Join(dir, "examples", ex, "main.go")
					r := ctxwatch(t, append(exampleFlags(t, ex, src), "--", exe)...)
					if r.code != 0 {
						t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
					}
					checkExample(t, src, r)
				})
				if ok {
					c.pass = append(c.pass, ex)
				} else {
					c.fail = append(c.fail, ex)
				}
			}
		})
	}
}

// checkBuild proves the target is what the cell claims: built by tc, and
// stripped, PIE or linked with cgo as the mode says.
func checkBuild(t *testing.T, exe, tc, mode string) {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", exe).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", exe, err)
	}
	info := string(out)
	if !strings.Contains(info, ": "+tc+"\n") {
		t.Fatalf("%s was not built by %s:\n%s", exe, tc, info)
	}
	ef, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	hasSym := ef.Section(".symtab") != nil
	pie := ef.Type == elf.ET_DYN
	// A cgo program links the C library; a Go-only one (PIE included)
	// needs no shared library.
	libs, _ := ef.ImportedLibraries()
	cgo := len(libs) > 0
	want := map[string][3]bool{ // symtab, pie, cgo
		"default": {true, false, false}, "stripped": {false, false, false},
		"pie": {true, true, false}, "cgo": {true, false, true},
	}[mode]
	if got := [3]bool{hasSym, pie, cgo}; got != want {
		t.Fatalf("%s: symtab, PIE, cgo = %v; mode %s wants %v", exe, got, mode, want)
	}
}

// arm64Heading starts the section of docs/compatibility.md that make compat
// keeps as it is: the arm64 rows, from runs of vmtest -arch arm64 (this
// matrix runs on the host's architecture).
const arm64Heading = "\n## arm64\n"

// arm64Section returns the arm64 section of the document doc, "" if none.
func arm64Section(doc []byte) []byte {
	if i := bytes.Index(doc, []byte(arm64Heading)); i >= 0 {
		return doc[i:]
	}
	return nil
}

// compatDoc renders the results as docs/compatibility.md.
func compatDoc(toolchains []string, res *compatResults, took time.Duration) []byte {
	var b strings.Builder
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "# Compatibility\n\n")
	fmt.Fprintf(&b, "Generated by `make compat` (`CTXWATCH_COMPAT=all go test -run TestCompat ./integration`); do not edit.\n")
	fmt.Fprintf(&b, "Run %s on linux/%s, kernel %s, in %s.\n\n", time.Now().UTC().Format("2006-01-02"), runtime.GOARCH, strings.TrimSpace(string(kernel)), took.Round(time.Second))
	b.WriteString("Each cell: the examples built with that toolchain and mode, run under ctxwatch and checked\n")
	b.WriteString("against their `want:` markers and their own counts (as `TestExamples` does), passed / run.\n")
	b.WriteString("Modes: `default` (CGO_ENABLED=0), `stripped` (`-ldflags=-s -w`), `pie` (`-buildmode=pie`),\n")
	b.WriteString("`cgo` (CGO_ENABLED=1, with a C call at start).\n\n")
	b.WriteString("| toolchain |")
	for _, m := range compatModes {
		fmt.Fprintf(&b, " %s |", m.name)
	}
	b.WriteString("\n|---|")
	for range compatModes {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var notes []string
	for _, tc := range toolchains {
		fmt.Fprintf(&b, "| %s |", tc)
		for _, m := range compatModes {
			c := res.cells[tc][m.name]
			switch {
			case c == nil:
				b.WriteString(" not run |")
			case c.err != "":
				fmt.Fprintf(&b, " FAIL: %s |", c.err)
			case len(c.fail) > 0:
				sort.Strings(c.fail)
				fmt.Fprintf(&b, " FAIL %d/%d (%s) |", len(c.pass), len(c.pass)+len(c.fail), strings.Join(c.fail, ", "))
			default:
				fmt.Fprintf(&b, " pass %d/%d |", len(c.pass), len(c.pass))
			}
		}
		b.WriteString("\n")
		if na := res.na[tc]; len(na) > 0 {
			notes = append(notes, fmt.Sprintf("- %s: %s not built: no OTel SDK release of ctxwatch's layout table builds with this Go.", tc, strings.Join(na, ", ")))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNot in the counts:\n\n")
		b.WriteString(strings.Join(notes, "\n"))
		b.WriteString("\n")
	}
	b.WriteString("\nToolchains before Go 1.22 build the examples after a line-preserving rewrite\n")
	b.WriteString("(`integration/internal/compat`: range over int, per-iteration loop variables, `atomic.Int64`),\n")
	b.WriteString("and errgroup with golang.org/x/sync v0.1.0.\n")
	b.WriteString("Toolchains before the Go of go.mod build the OTel examples against the newest OTel release\n")
	b.WriteString("of ctxwatch's layout table that they build:")
	for i, r := range compat.OTelReleases {
		sep := ","
		if i == len(compat.OTelReleases)-1 {
			sep = "."
		}
		fmt.Fprintf(&b, "\nSDK %s and otelhttp %s from Go 1.%d%s", r.SDK, r.HTTP, r.GoMinor, sep)
	}
	b.WriteString("\n")
	return []byte(b.String())
}

// TestAttachReplacedBinary: a process whose executable file was deleted, or
// replaced by another file, after it started (a deploy that swaps the
// binary) is attached through /proc/PID/exe, which still names the file the
// process runs.
func TestAttachReplacedBinary(t *testing.T) {
	requireRoot(t)
	for _, how := range []string{"deleted", "replaced"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			exe := filepath.Join(dir, "waiter")
			data, err := os.ReadFile(filepath.Join(bin, "waiter"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(exe, data, 0o755); err != nil {
				t.Fatal(err)
			}
			target, stdin, lines := startWaiter(t, exe)
			go func() {
				for lines.Scan() {
				}
			}()
			switch how {
			case "deleted":
				err = os.Remove(exe)
			case "replaced":
				// A different program (ctxwatch itself) now at the path.
				next := exe + ".new"
				if err = copyFile(filepath.Join(bin, "ctxwatch"), next); err == nil {
					err = os.Rename(next, exe)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			cw, out, stderr := watchPID(t, target.Process.Pid)
			runWaiter(t, target, cw, stdin, out, stderr, 4)
		})
	}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}

// TestTooOldGo: a Go 1.16 binary (arguments on the stack, no register ABI)
// gets one line naming its version and runs unwatched: no verdicts.
func TestTooOldGo(t *testing.T) {
	requireRoot(t)
	if os.Getenv("CTXWATCH_TEST_BIN") != "" {
		t.Skip("prebuilt binaries (vmtest): needs the go command to build a go1.16 target")
	}
	const tc = "go1.16.15"
	dir := t.TempDir()
	src := "package main\n\nimport (\n\t\"context\"\n\t\"fmt\"\n)\n\ntype key struct{}\n\n" +
		"func main() {\n\tctx := context.WithValue(context.Background(), key{}, \"0123456789abcdef0123456789abcdef\")\n" +
		"\tdone := make(chan bool)\n\tgo func() { _, c := context.WithCancel(context.Background()); c(); done <- true }()\n" +
		"\t<-done\n\tfmt.Println(\"old: ran\", ctx.Value(key{}) != nil)\n}\n"
	for name, text := range map[string]string{"go.mod": "module old\n\ngo 1.16\n", "main.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", "old", ".")
	build.Dir = dir
	build.Env = compatEnv(tc, false)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build with %s: %v\n%s", tc, err, out)
	}
	r := ctxwatch(t, "--trace-key", "type=main.key", "--", filepath.Join(dir, "old"))
	// The target runs through; ctxwatch exits 1 as for any Go program it
	// could not watch.
	if r.code != 1 || !strings.Contains(r.stdout, "old: ran true") {
		t.Errorf("exit %d, target said %q; want exit 1 and the target run through", r.code, r.stdout)
	}
	var said []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if strings.Contains(l, "not watched") {
			said = append(said, l)
		}
	}
	if len(said) != 1 || !strings.Contains(said[0], tc) || !strings.Contains(said[0], "Go 1.17") {
		t.Errorf("want one line naming %s and what is supported; stderr:\n%s", tc, r.stderr)
	}
	if len(r.breaks) != 0 {
		t.Errorf("verdicts on an unwatched binary: %+v", r.breaks)
	}
	for _, s := range r.summaries {
		if len(s.Breaks) != 0 || len(s.SpawnSites) != 0 {
			t.Errorf("summary of an unwatched binary: %+v", s)
		}
	}
}
