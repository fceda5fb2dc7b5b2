package main

import (
	"bufio"
	"debug/elf"
	_ "embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

//go:embed init.sh
var initScript string

// suiteRun is one test binary run inside the VM.
type suiteRun struct {
	name string   // "integration"
	dir  string   // working directory: the package's directory, at the host's path
	args []string // after the binary
}

// build compiles ctxwatch, the example targets and the test binaries for
// goarch (CGO_ENABLED=0: the initramfs has no libc for them) into out.
func build(root, out, goarch string, logf func(string, ...any)) error {
	env := append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOOS=linux", "CTXWATCH_TEST_BUILD="+filepath.Join(out, "bin"))
	if err := os.MkdirAll(filepath.Join(out, "bin"), 0o755); err != nil {
		return err
	}
	for _, c := range []struct {
		env  string
		args []string
	}{
		// integration's TestMain builds its targets into
		// $CTXWATCH_TEST_BUILD, for $CTXWATCH_TEST_GOARCH, and stops (it
		// runs here: built for the host): the VM gets the very set the
		// host tests use, built from this tree (file paths in the
		// binaries are the host's, and the tests read the want: markers
		// of those files).
		{"CTXWATCH_TEST_GOARCH=" + goarch, []string{"test", "-count=1", "-run=^$", "./integration"}},
		{"GOARCH=" + goarch, []string{"test", "-c", "-o", filepath.Join(out, "tests", "integration.test"), "./integration"}},
		{"GOARCH=" + goarch, []string{"test", "-c", "-o", filepath.Join(out, "tests", "agent.test"), "./internal/agent"}},
		{"GOARCH=" + goarch, []string{"test", "-c", "-o", filepath.Join(out, "tests", "uprobe.test"), "./internal/uprobe"}},
	} {
		logf("%s go %s", c.env, strings.Join(c.args, " "))
		cmd := exec.Command("go", c.args...)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = root, append(env, c.env), os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s go %s: %w", c.env, strings.Join(c.args, " "), err)
		}
	}
	return nil
}

// hostPrograms are dynamically linked programs the tests run, copied from
// the host with their libraries: tmux gives TestLiveTable a terminal, and
// util-linux's setpriv drops privileges in TestCapabilities.
var hostPrograms = []string{"/usr/bin/tmux", "/usr/bin/setpriv"}

// terminfo entries tmux needs (for its panes and its client).
var terminfo = []string{"t/tmux", "t/tmux-256color", "s/screen", "s/screen-256color", "l/linux", "d/dumb", "v/vt100"}

// extraFile is a file of the host put into the initramfs, at path.
type extraFile struct{ path, src string }

// writeInitramfs writes an uncompressed newc cpio archive (the kernel
// unpacks it without a decompressor, faster under TCG) holding busybox, the
// host programs (when the guest is of the host's architecture), the built
// binaries in /ctxwatch, the Go sources the tests read at their host
// paths, the extra files, and /init running runs.
func writeInitramfs(dst, root, built, busybox string, a arch, runs []suiteRun, extra []extraFile, env map[string]string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := newCpio(bw)

	if err := requireStatic(busybox); err != nil {
		return fmt.Errorf("%w: apt-get install busybox-static", err)
	}
	if err := w.file("/bin/busybox", busybox, 0o755); err != nil {
		return fmt.Errorf("busybox (apt-get install busybox-static): %w", err)
	}
	if err := w.data("/init", []byte(renderInit(runs, env)), 0o755); err != nil {
		return err
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/root", "/run", "/sbin", "/usr/sbin"} {
		w.dir(d)
	}
	w.data("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	w.data("/etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)

	if a.goarch == hostArch {
		for _, p := range hostPrograms {
			extra = append(extra, extraFile{p, p})
		}
	}
	for _, e := range extra {
		if err := requireArch(e.src, a); err != nil {
			return err
		}
		var libs []string // those of another architecture come in extra (fetchGuestPrograms)
		if a.goarch == hostArch && requireStatic(e.src) != nil {
			var err error
			if libs, err = sharedLibs(e.src); err != nil {
				return err
			}
		}
		if err := w.file(e.path, e.src, 0o755); err != nil {
			return err
		}
		for _, f := range libs {
			if err := w.file(f, f, 0o755); err != nil {
				return err
			}
		}
	}
	for _, t := range terminfo {
		for _, d := range []string{"/usr/share/terminfo", "/lib/terminfo"} {
			if _, err := os.Stat(filepath.Join(d, t)); err == nil {
				if err := w.file(filepath.Join("/usr/share/terminfo", t), filepath.Join(d, t), 0o644); err != nil {
					return err
				}
				break
			}
		}
	}

	// tmux wants a UTF-8 locale; glibc's C.UTF-8 is a directory of files.
	err = filepath.WalkDir("/usr/lib/locale/C.utf8", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return w.file(p, p, 0o644)
	})
	if err != nil {
		return fmt.Errorf("the C.UTF-8 locale for tmux: %w", err)
	}

	// The built binaries.
	err = filepath.WalkDir(built, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(built, p)
		return w.file("/ctxwatch/"+rel, p, 0o755)
	})
	if err != nil {
		return err
	}
	// Sources the tests read (want: markers, ctxwatch-flags:), at the
	// paths the binaries were built from.
	for _, d := range []string{"examples", "integration/testdata"} {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".go") {
				return err
			}
			return w.file(p, p, 0o644)
		})
		if err != nil {
			return err
		}
	}
	for _, r := range runs {
		w.dir(r.dir)
	}
	if err := w.close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// requireArch fails unless prog is an ELF program for a.
func requireArch(prog string, a arch) error {
	f, err := elf.Open(prog)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Machine != a.machine {
		return fmt.Errorf("%s is for %v, not %s", prog, f.Machine, a.goarch)
	}
	return nil
}

// requireStatic fails unless prog is a statically linked ELF program.
func requireStatic(prog string) error {
	f, err := elf.Open(prog)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is not statically linked", prog)
		}
	}
	return nil
}

var lddRE = regexp.MustCompile(`(?m)(?:=>\s*)?(/\S+)\s+\(0x`)

// sharedLibs lists the shared libraries a program loads, by ldd.
func sharedLibs(prog string) ([]string, error) {
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s (is it installed?): %w", prog, err)
	}
	var libs []string
	for _, m := range lddRE.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	return libs, nil
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func renderInit(runs []suiteRun, env map[string]string) string {
	var b strings.Builder
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	for _, r := range runs {
		args := make([]string, len(r.args))
		for i, a := range r.args {
			args[i] = shellQuote(a)
		}
		fmt.Fprintf(&b, "run_suite %s %s /ctxwatch/tests/%s.test %s\n", r.name, shellQuote(r.dir), r.name, strings.Join(args, " "))
	}
	return strings.Replace(initScript, "#SUITES#\n", b.String(), 1)
}

// cpio writes a newc archive, creating each parent directory once.
type cpio struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCpio(w io.Writer) *cpio { return &cpio{w: w, ino: 1, dirs: map[string]bool{"/": true}} }

func (c *cpio) header(name string, mode uint32, size int64) {
	if c.err != nil {
		return
	}
	name = strings.TrimPrefix(name, "/")
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	_, c.err = io.WriteString(c.w, hdr+name+"\x00"+pad(len(hdr)+len(name)+1))
}

func pad(n int) string { return strings.Repeat("\x00", (4-n%4)%4) }

func (c *cpio) dir(p string) {
	p = path.Clean(p)
	if c.dirs[p] {
		return
	}
	c.dir(path.Dir(p))
	c.dirs[p] = true
	c.header(p, 0o040755, 0)
}

func (c *cpio) data(p string, data []byte, perm uint32) error {
	c.dir(path.Dir(p))
	c.header(p, 0o100000|perm, int64(len(data)))
	if c.err == nil {
		_, c.err = io.WriteString(c.w, string(data)+pad(len(data)))
	}
	return c.err
}

// file adds the host file src (following symlinks) at p.
func (c *cpio) file(p, src string, perm uint32) error {
	if c.err != nil {
		return c.err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	c.dir(path.Dir(p))
	c.header(p, 0o100000|perm, st.Size())
	if c.err != nil {
		return c.err
	}
	n, err := io.Copy(c.w, f)
	if err != nil {
		return err
	}
	if n != st.Size() {
		return fmt.Errorf("%s changed while archived", src)
	}
	_, c.err = io.WriteString(c.w, pad(int(n)))
	return c.err
}

func (c *cpio) close() error {
	c.header("TRAILER!!!", 0, 0)
	return c.err
}

// sortedKeys is for stable output.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
