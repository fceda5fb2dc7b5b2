package pcln

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const testMain = `package main

import (
	"fmt"
	"runtime"
)

// level3, helperLevel (helper.go), level2 and level1 are small enough to be
// inlined into physical (or main); the func value passed to helperLevel is
// devirtualized after inlining. capture itself may or may not be inlined.
func capture() []uintptr {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(1, pcs)
	return pcs[:n]
}

func level3() []uintptr { return capture() }
func level2() []uintptr { return helperLevel(level3) }
func level1() []uintptr { return level2() }

//go:noinline
func physical() []uintptr {
	return level1()
}

func dump(tag string, pcs []uintptr) {
	for _, pc := range pcs {
		fmt.Printf("PC %s %#x\n", tag, pc)
	}
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		fmt.Printf("F %s %s|%s|%d\n", tag, f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
}

func main() {
	dump("a", physical())
	dump("b", level1()) // inlined straight into main
}
`

const testHelper = `package main

func helperLevel(f func() []uintptr) []uintptr {
	return f()
}
`

type expFrame struct {
	fn, file string
	line     int
}

func (e expFrame) String() string { return fmt.Sprintf("%s %s:%d", e.fn, e.file, e.line) }

var (
	buildMu   sync.Mutex
	buildDirs = map[string]string{} // by toolchain ("local" or "go1.N.M")
	buildRoot string
)

// buildTestBinaries builds the test program with the local toolchain in
// default and stripped modes (shared by all tests) and returns the directory
// holding them.
func buildTestBinaries(t *testing.T) string {
	t.Helper()
	return buildWith(t, "local")
}

// buildWith builds the test program with a toolchain ("local", or go1.N.M
// fetched by the go command) in default, stripped and PIE modes.
func buildWith(t *testing.T, toolchain string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if dir, ok := buildDirs[toolchain]; ok {
		return dir
	}
	var err error
	if buildRoot == "" {
		if buildRoot, err = os.MkdirTemp("", "pcln-test"); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(buildRoot, toolchain)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod":    "module example.com/inl\n\ngo 1.16\n",
		"main.go":   testMain,
		"helper.go": testHelper,
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for mode, args := range map[string][]string{
		"default":  {"build", "-o", "default"},
		"stripped": {"build", "-ldflags=-s -w", "-o", "stripped"},
		"pie":      {"build", "-buildmode=pie", "-o", "pie"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		// GOENV=off: old toolchains reject flags of the user's go env
		// file (GOFLAGS=-buildvcs=false).
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=", "GOENV=off", "GOTOOLCHAIN="+toolchain)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s with %s: %v\n%s", mode, toolchain, err, out)
		}
	}
	buildDirs[toolchain] = dir
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildRoot != "" {
		os.RemoveAll(buildRoot)
	}
	seeds.Close()
	os.Exit(code)
}

func openTable(t *testing.T, path string) *Table {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tab, err := New(f)
	if err != nil {
		t.Fatalf("New(%s): %v", path, err)
	}
	return tab
}

// runGroundTruth runs the binary and returns, per tag, the pcs from
// runtime.Callers and the frames runtime.CallersFrames made of them.
func runGroundTruth(t *testing.T, path string) (map[string][]uint64, map[string][]expFrame) {
	t.Helper()
	out, err := exec.Command(path).Output()
	if err != nil {
		t.Fatalf("run %s: %v", path, err)
	}
	pcs := map[string][]uint64{}
	frames := map[string][]expFrame{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 3)
		if len(fields) != 3 {
			t.Fatalf("bad line %q", sc.Text())
		}
		switch fields[0] {
		case "PC":
			v, err := strconv.ParseUint(fields[2], 0, 64)
			if err != nil {
				t.Fatal(err)
			}
			pcs[fields[1]] = append(pcs[fields[1]], v)
		case "F":
			p := strings.Split(fields[2], "|")
			if len(p) != 3 {
				t.Fatalf("bad frame line %q", sc.Text())
			}
			line, err := strconv.Atoi(p[2])
			if err != nil {
				t.Fatal(err)
			}
			frames[fields[1]] = append(frames[fields[1]], expFrame{p[0], p[1], line})
		}
	}
	return pcs, frames
}

func toExp(f Frame) expFrame { return expFrame{f.Function, f.File, f.Line} }

func TestFramesMatchRuntime(t *testing.T) {
	dir := buildTestBinaries(t)
	checkFramesMatchRuntime(t, dir, "default", "stripped")
	checkPIE(t, dir)
}

// TestFramesOldToolchains checks the pclntab formats of Go 1.17 (0xfffffffa:
// absolute entries and funcdata) and Go 1.18/1.19 (0xfffffff0) against the
// runtime's own symbolization, with toolchains the go command fetches
// through the module proxy (cached in GOMODCACHE after the first run).
func TestFramesOldToolchains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with old toolchains; not in -short")
	}
	for _, tc := range []string{"go1.17.13", "go1.18.10", "go1.19.13"} {
		t.Run(tc, func(t *testing.T) {
			dir := buildWith(t, tc)
			checkFramesMatchRuntime(t, dir, "default", "stripped")
			checkPIE(t, dir)
			checkAfterClose(t, filepath.Join(dir, "default"))
		})
	}
}

// checkPIE opens the PIE build (its pcln table is .data.rel.ro.gopclntab
// before Go 1.20) and symbolizes a function entry given at its link-time
// address, as ctxwatch does after subtracting the load bias.
func checkPIE(t *testing.T, dir string) {
	t.Run("pie", func(t *testing.T) {
		path := filepath.Join(dir, "pie")
		tab := openTable(t, path)
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		syms, err := f.Symbols()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range syms {
			if s.Name != "main.physical" && s.Name != "main.dump" {
				continue
			}
			n++
			fr, err := tab.Frames(s.Value + 1)
			if err != nil || fr[len(fr)-1].Function != s.Name || !strings.HasSuffix(fr[len(fr)-1].File, "/main.go") {
				t.Errorf("Frames(%s+1) = %v, %v", s.Name, fr, err)
			}
		}
		if n != 2 {
			t.Errorf("found %d of main.physical, main.dump in the symbol table", n)
		}
	})
}

// checkAfterClose: a Table keeps working after its ELF file is closed (as
// ctxwatch closes it once attached), inline trees included.
func checkAfterClose(t *testing.T, path string) {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	pcs, want := runGroundTruth(t, path)
	inlined := false
	for i, pc := range pcs["a"] {
		got, err := tab.FramesForReturn(pc)
		if err != nil || toExp(got[0]) != want["a"][i] {
			t.Fatalf("after Close: FramesForReturn(%#x) = %v, %v; want %v", pc, got, err, want["a"][i])
		}
		inlined = inlined || len(got) > 1
	}
	if !inlined {
		t.Error("after Close: no inline tree expanded")
	}
}

func checkFramesMatchRuntime(t *testing.T, dir string, modes ...string) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			path := filepath.Join(dir, mode)
			tab := openTable(t, path)
			if ef, err := elf.Open(path); err == nil {
				if mode == "stripped" && (ef.Section(".symtab") != nil || ef.Section(".debug_info") != nil) {
					t.Error("stripped binary still has .symtab or DWARF")
				}
				ef.Close()
			}
			t.Logf("gofunc=%#x found via %s, text=%#x", tab.gofunc, tab.gofuncFrom, tab.text)
			if mode == "stripped" && tab.magic != magic116 && tab.gofuncFrom != "moduledata" {
				t.Errorf("stripped binary: gofunc found via %q, want moduledata", tab.gofuncFrom)
			}
			allPCs, allFrames := runGroundTruth(t, path)
			for _, tag := range []string{"a", "b"} {
				pcs, want := allPCs[tag], allFrames[tag]
				if len(pcs) == 0 || len(pcs) != len(want) {
					t.Fatalf("%s: %d pcs but %d runtime frames", tag, len(pcs), len(want))
				}
				// runtime.Callers emits one (possibly virtual) pc per
				// logical frame, so the innermost frame of each pc must
				// be the runtime's frame for it.
				for i, pc := range pcs {
					got, err := tab.FramesForReturn(pc)
					if err != nil {
						t.Fatalf("%s: FramesForReturn(%#x): %v", tag, pc, err)
					}
					if toExp(got[0]) != want[i] {
						t.Errorf("%s[%d] pc %#x: got %v, want %v", tag, i, pc, toExp(got[0]), want[i])
					}
				}
				// A stack unwinder (eBPF) only sees the physical return
				// addresses: the first pc, then the pc after each group of
				// inlined frames. Expanding those must reproduce the whole
				// logical stack.
				inlined := 0
				var logical []expFrame
				for i := 0; i < len(pcs); {
					got, err := tab.FramesForReturn(pcs[i])
					if err != nil {
						t.Fatal(err)
					}
					same, err := tab.Frames(pcs[i] - 1)
					if err != nil || len(same) != len(got) {
						t.Fatalf("Frames(%#x) = %v, %v; FramesForReturn gave %v", pcs[i]-1, same, err, got)
					}
					for k, f := range got {
						if f.Inlined != (k < len(got)-1) {
							t.Errorf("frame %v: Inlined=%v at position %d of %d", f, f.Inlined, k, len(got))
						}
						if f.Inlined {
							inlined++
						}
						logical = append(logical, toExp(f))
					}
					i += len(got)
				}
				if fmt.Sprint(logical) != fmt.Sprint(want) {
					t.Errorf("%s: expanded physical stack\n got  %v\n want %v", tag, logical, want)
				}
				// The level3..level1 chain must have been inlined.
				if inlined < 3 {
					t.Errorf("%s: only %d inlined frames; test program not inlined as expected", tag, inlined)
				}
				t.Logf("%s: %d logical frames, %d inlined: %v", tag, len(logical), inlined, logical)
			}

			pc := allPCs["a"][0] - 1
			fr, err := tab.Frames(pc)
			if err != nil {
				t.Fatal(err)
			}
			name, entry, end, ok := tab.Func(pc)
			if !ok || name != fr[len(fr)-1].Function || !(entry <= pc && pc < end) {
				t.Errorf("Func(%#x) = %q, %#x, %#x, %v; physical frame %v", pc, name, entry, end, ok, fr[len(fr)-1])
			}
		})
	}
}

// TestGofuncSymtabVsModuledata checks that the moduledata scan used for
// stripped binaries agrees with the go:func.* symbol of the unstripped one.
func TestGofuncSymtabVsModuledata(t *testing.T) {
	dir := buildTestBinaries(t)
	f, err := elf.Open(filepath.Join(dir, "default"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	if tab.gofuncFrom != "symtab" {
		t.Fatalf("default build: gofunc from %q, want symtab", tab.gofuncFrom)
	}
	md, err := findModuledata(image{f: f}, f.Section(".gopclntab").Addr, tab)
	if err != nil {
		t.Fatal(err)
	}
	if md.gofunc != tab.gofunc || md.text != tab.text {
		t.Errorf("moduledata gofunc=%#x text=%#x; symtab gofunc=%#x text=%#x", md.gofunc, md.text, tab.gofunc, tab.text)
	}
	syms, _ := f.Symbols()
	for _, s := range syms {
		if s.Name == "runtime.firstmoduledata" && s.Value != md.addr {
			t.Errorf("moduledata found at %#x, runtime.firstmoduledata is %#x", md.addr, s.Value)
		}
	}
}

func TestOutsideFunction(t *testing.T) {
	tab := openTable(t, filepath.Join(buildTestBinaries(t), "stripped"))
	for _, pc := range []uint64{0, 1, tab.text - 1, 0xffffffffffffff00, ^uint64(0)} {
		if fr, err := tab.Frames(pc); err == nil || !errors.Is(err, ErrNoFunc) {
			t.Errorf("Frames(%#x) = %v, %v; want ErrNoFunc", pc, fr, err)
		}
		if _, _, _, ok := tab.Func(pc); ok {
			t.Errorf("Func(%#x) ok", pc)
		}
	}
	if _, err := tab.FramesForReturn(0); err == nil {
		t.Error("FramesForReturn(0) succeeded")
	}
	end, _ := tab.ftabEntry(tab.nfunc)
	if _, err := tab.Frames(tab.text + uint64(end)); err == nil {
		t.Error("Frames(end of text) succeeded")
	}
}

// TestTruncatedAndCorrupt feeds truncated and corrupted tables; any error
// is fine, a panic is not.
func TestTruncatedAndCorrupt(t *testing.T) {
	dir := buildTestBinaries(t)
	raw, err := os.ReadFile(filepath.Join(dir, "stripped"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	good, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	pclnData, err := f.Section(".gopclntab").Data()
	if err != nil {
		t.Fatal(err)
	}
	// Sample pcs across the text.
	endOff, _ := good.ftabEntry(good.nfunc)
	var pcs []uint64
	for off := uint64(0); off < uint64(endOff); off += uint64(endOff)/2000 + 1 {
		pcs = append(pcs, good.text+off)
	}
	exercise := func(tab *Table) {
		for _, pc := range pcs {
			tab.Frames(pc)
			tab.Func(pc)
		}
	}
	// Truncated pclntab.
	for _, n := range []int{0, 4, 8, 16, 71, 72, 100, 1000, len(pclnData) / 4, len(pclnData) / 2, len(pclnData) - 1} {
		tab, err := parseHeader(pclnData[:n])
		if err != nil {
			continue
		}
		tab.text, tab.gofunc, tab.gofuncData = good.text, good.gofunc, good.gofuncData
		exercise(tab)
	}
	// Truncated go:func.* data.
	for _, n := range []int{0, 1, 17, len(good.gofuncData) / 2} {
		tab := *good
		tab.gofuncData = good.gofuncData[:n]
		exercise(&tab)
	}
	// Corrupted bytes (deterministic pseudo-random flips).
	seed := uint64(1)
	rnd := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	for round := 0; round < 20; round++ {
		p := bytes.Clone(pclnData)
		g := bytes.Clone(good.gofuncData)
		for k := 0; k < 200; k++ {
			p[72+rnd(len(p)-72)] = byte(rnd(256))
			g[rnd(len(g))] = byte(rnd(256))
		}
		tab, err := parseHeader(p)
		if err != nil {
			continue
		}
		tab.text, tab.gofunc, tab.gofuncData = good.text, good.gofunc, g
		exercise(tab)
	}
	// Truncated ELF files.
	for _, n := range []int{0, 64, 4096, len(raw) / 3, len(raw) / 2, len(raw) - 100} {
		ef, err := elf.NewFile(bytes.NewReader(raw[:n]))
		if err != nil {
			continue
		}
		if tab, err := New(ef); err == nil {
			exercise(tab)
		}
	}
	// Wrong magic / old versions.
	for _, m := range []uint32{0, magic12, 0xdeadbeef} {
		p := bytes.Clone(pclnData)
		p[0], p[1], p[2], p[3] = byte(m), byte(m>>8), byte(m>>16), byte(m>>24)
		if _, err := parseHeader(p); err == nil {
			t.Errorf("magic %#x accepted", m)
		}
	}
}

// TestFuncsMatchSymtab: the function list (mapped, names in place) has every
// function symbol of the symbol table at its address and name, in default,
// and PIE builds of this toolchain.
func TestFuncsMatchSymtab(t *testing.T) {
	dir := buildTestBinaries(t)
	for _, mode := range []string{"default", "pie"} {
		path := filepath.Join(dir, mode)
		image, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tab, err := NewMapped(f, image, nil)
		if err != nil {
			t.Fatalf("%s: NewMapped: %v", mode, err)
		}
		funcs, err := tab.Funcs()
		if err != nil {
			t.Fatal(err)
		}
		byEntry := make(map[uint64]string, len(funcs))
		for i, fn := range funcs {
			if i > 0 && fn.Entry < funcs[i-1].End {
				t.Fatalf("%s: function %d at %#x overlaps the previous one", mode, i, fn.Entry)
			}
			byEntry[fn.Entry] = string(tab.NameBytes(fn))
			if tab.Name(fn) != byEntry[fn.Entry] {
				t.Fatalf("%s: Name %q, NameBytes %q", mode, tab.Name(fn), byEntry[fn.Entry])
			}
		}
		syms, err := f.Symbols()
		if err != nil {
			t.Fatal(err)
		}
		checked := 0
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || strings.HasPrefix(s.Name, "type:") {
				continue
			}
			name, ok := byEntry[s.Value]
			if !ok {
				t.Errorf("%s: symbol %s at %#x is not a function of the table", mode, s.Name, s.Value)
				continue
			}
			// The symbol table marks assembly (ABI0) functions; the
			// pclntab names them plainly.
			if want := strings.TrimSuffix(s.Name, ".abi0"); name != want {
				t.Errorf("%s: at %#x the table names %q, the symbol table %q", mode, s.Value, name, s.Name)
			}
			checked++
		}
		if checked < 1000 {
			t.Errorf("%s: only %d function symbols checked", mode, checked)
		}
	}
}

// TestNameIs: NameIs agrees with Name on every function of a real table,
// and a name that is a prefix of another, or runs past it, is not it.
func TestNameIs(t *testing.T) {
	tab := openTable(t, filepath.Join(buildTestBinaries(t), "stripped"))
	funcs, err := tab.Funcs()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range funcs {
		name := tab.Name(f)
		if name == "" {
			continue
		}
		if !tab.NameIs(f, name) {
			t.Fatalf("NameIs(%q) false for the function of that name", name)
		}
		if tab.NameIs(f, name[:len(name)-1]) || tab.NameIs(f, name+".x") {
			t.Fatalf("NameIs true for a prefix or extension of %q", name)
		}
	}
	if tab.NameIs(funcs[len(funcs)-1], strings.Repeat("x", len(tab.funcnametab)+1)) {
		t.Error("NameIs true for a name longer than the table")
	}
}
