package deploy

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int    // where it starts, for messages
	cmd  string // FROM, RUN, ... in upper case
	args string
}

// stage is the instructions from one FROM to the next.
type stage struct {
	image, name string
	body        []instruction
}

func parseDockerfile(path string) ([]stage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		stages []stage
		cur    string
		start  int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if cur == "" && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if cur == "" {
			start = n
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			cur += s + " "
			continue
		}
		cur += l
		cmd, args, _ := strings.Cut(cur, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		cur = ""
		if in.cmd == "FROM" {
			w := strings.Fields(in.args)
			st := stage{image: w[0]}
			if len(w) == 3 && strings.EqualFold(w[1], "AS") {
				st.name = w[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("%s:%d: %s before FROM", path, in.line, in.cmd)
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	return stages, sc.Err()
}

// shellWords splits a command line as sh would where it has only words,
// quotes and assignments; anything more (&&, ;, $, redirections) is refused,
// so that the test runs exactly what the Dockerfile says.
func shellWords(s string) ([]string, error) {
	if i := strings.IndexAny(s, "&;|<>$`\\"); i >= 0 {
		return nil, fmt.Errorf("%q: %c: keep the go build alone on its RUN line, without shell syntax", s, s[i])
	}
	var (
		words []string
		w     strings.Builder
		quote rune
		inW   bool
	)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inW = r, true
		case r == ' ' || r == '\t':
			if inW {
				words = append(words, w.String())
				w.Reset()
				inW = false
			}
		default:
			w.WriteRune(r)
			inW = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%q: unterminated quote", s)
	}
	if inW {
		words = append(words, w.String())
	}
	return words, nil
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// goBuild is the image's go build: its environment and arguments.
type goBuild struct {
	env  []string // from ENV and the RUN line, in order
	args []string // after "go build"
	out  string   // the -o path
}

func findGoBuild(st stage) (goBuild, error) {
	var b goBuild
	for _, in := range st.body {
		switch in.cmd {
		case "ENV":
			w, err := shellWords(in.args)
			if err != nil {
				return b, fmt.Errorf("line %d: %w", in.line, err)
			}
			if len(w) == 2 && !assignment.MatchString(w[0]) {
				w = []string{w[0] + "=" + w[1]}
			}
			b.env = append(b.env, w...)
		case "RUN":
			if !strings.Contains(in.args, "go build") {
				continue
			}
			w, err := shellWords(in.args)
			if err != nil {
				return b, fmt.Errorf("line %d: %w", in.line, err)
			}
			i := 0
			for ; i < len(w) && assignment.MatchString(w[i]); i++ {
				b.env = append(b.env, w[i])
			}
			if len(w) < i+2 || w[i] != "go" || w[i+1] != "build" {
				return b, fmt.Errorf("line %d: %q is not VAR=VALUE... go build ...", in.line, in.args)
			}
			b.args = w[i+2:]
			for j, a := range b.args {
				if a == "-o" && j+1 < len(b.args) {
					b.out = b.args[j+1]
				} else if v, ok := strings.CutPrefix(a, "-o="); ok {
					b.out = v
				}
			}
			if b.out == "" {
				return b, fmt.Errorf("line %d: go build has no -o", in.line)
			}
			return b, nil
		}
	}
	return b, fmt.Errorf("stage %s has no RUN go build", st.name)
}

// goVersion reads the go line of a go.mod.
func goVersion(gomod string) (major, minor int, err error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return 0, 0, err
	}
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindSubmatch(data)
	if m == nil {
		return 0, 0, fmt.Errorf("%s has no go line", gomod)
	}
	major, _ = strconv.Atoi(string(m[1]))
	minor, _ = strconv.Atoi(string(m[2]))
	return major, minor, nil
}

// TestDockerfile runs the image's go build line here, in the repository
// root as the builder's WORKDIR holds it, and checks that the binary is
// static: no ELF interpreter, no dynamic section, no shared library; then
// that ctxwatch node takes the arguments the manifests give it. The image
// itself cannot be built here (no docker): what the final stage needs of
// the binary is checked on what that line builds.
func TestDockerfile(t *testing.T) {
	stages, err := parseDockerfile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("want a builder stage and a final stage, have %d stages", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]

	// The builder's Go must be at least go.mod's: the golang image has
	// GOTOOLCHAIN=local, so it would not fetch a newer one.
	m := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(builder.image)
	if m == nil {
		t.Fatalf("builder image %s is not golang:MAJOR.MINOR...", builder.image)
	}
	wantMajor, wantMinor, err := goVersion("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if major, _ := strconv.Atoi(m[1]); major != wantMajor {
		t.Errorf("builder image %s, go.mod wants go %d.%d", builder.image, wantMajor, wantMinor)
	} else if minor, _ := strconv.Atoi(m[2]); minor < wantMinor {
		t.Errorf("builder image %s, go.mod wants go %d.%d", builder.image, wantMajor, wantMinor)
	}

	b, err := findGoBuild(builder)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(b.args, "./cmd/ctxwatch") || !slices.Contains(b.args, "-trimpath") {
		t.Errorf("go build %q: want -trimpath and ./cmd/ctxwatch", b.args)
	}

	// The final stage: no libc, the binary at the path of the ENTRYPOINT
	// and of the DaemonSet's command, run as root.
	if final.image != "scratch" && !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		t.Errorf("final image %s: want scratch or gcr.io/distroless/static", final.image)
	}
	var dest string
	var entry []string
	for _, in := range final.body {
		switch in.cmd {
		case "COPY":
			w := strings.Fields(in.args)
			if len(w) == 3 && w[0] == "--from="+builder.name && w[1] == b.out {
				dest = w[2]
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entry); err != nil {
				t.Errorf("line %d: ENTRYPOINT is not in exec form: %v", in.line, err)
			}
		case "USER":
			if u, _, _ := strings.Cut(in.args, ":"); u != "0" && u != "root" {
				t.Errorf("line %d: USER %s: capabilities take effect for uid 0 only", in.line, in.args)
			}
		}
	}
	if want := []string{"/ctxwatch", "node"}; !slices.Equal(entry, want) {
		t.Errorf("ENTRYPOINT %q, want %q", entry, want)
	}
	if dest != "/ctxwatch" {
		t.Errorf("the final stage copies %s from stage %s to %q, want /ctxwatch", b.out, builder.name, dest)
	}
	if cmd := readManifest(t, "daemonset.yaml").daemonSets[0].Spec.Template.Spec.Containers[0].Command; len(cmd) == 0 || cmd[0] != dest {
		t.Errorf("daemonset.yaml runs %q, the image has the binary at %s", cmd, dest)
	}

	out := filepath.Join(t.TempDir(), "ctxwatch")
	buildImageBinary(t, b, out)

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is not static", p.Type)
		}
	}
	if f.Section(".dynamic") != nil || f.Section(".interp") != nil {
		t.Errorf("the binary has a .dynamic or .interp section: it is not static")
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("the binary is for %v, want x86-64", f.Machine)
	}

	// The command lines the DaemonSet runs must be ones this binary
	// accepts. --help last stops ctxwatch after the flags before it are
	// parsed (a flag it does not define is a usage error, exit 2), so
	// nothing is watched here.
	for _, src := range []struct {
		name string
		m    func(t *testing.T) manifest
	}{
		{"daemonset.yaml", func(t *testing.T) manifest { return readManifest(t, "daemonset.yaml") }},
		{"chart default", func(t *testing.T) manifest { return renderManifest(t, nil) }},
		{"chart all values", func(t *testing.T) manifest { return renderManifest(t, readValues(t, "testdata/all-values.yaml")) }},
	} {
		t.Run("args of "+src.name, func(t *testing.T) {
			c := src.m(t).daemonSets[0].Spec.Template.Spec.Containers[0]
			cmd := exec.Command(out, append(slices.Clone(c.Args), "--help")...)
			if outb, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("ctxwatch %s --help: %v\n%s", strings.Join(c.Args, " "), err, lastLines(outb, 5))
			}
		})
	}
}

// buildImageBinary runs the builder stage's go build line b here, in the
// repository root as the builder's WORKDIR holds it, writing the binary to
// out instead of the stage's -o path.
func buildImageBinary(t *testing.T, b goBuild, out string) {
	t.Helper()
	args := slices.Clone(b.args)
	for i, a := range args {
		if a == b.out {
			args[i] = out
		} else if strings.HasPrefix(a, "-o=") {
			args[i] = "-o=" + out
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = root
	// The golang image's defaults, not this machine's: cgo on (the image
	// has gcc), amd64 Linux, and no VCS stamp (Dockerfile.dockerignore
	// leaves .git out of the context). Then the Dockerfile's own.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-buildvcs=false")
	cmd.Env = append(cmd.Env, b.env...)
	t.Logf("%s go build %s", strings.Join(b.env, " "), strings.Join(args, " "))
	if outb, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, outb)
	}
}

func lastLines(b []byte, n int) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
