// Package target inspects a Go ELF executable without running it: build
// information, functions and their machine code, the file offsets a uprobe
// needs, and the layout of Go types recorded in DWARF.
//
// amd64 (EM_X86_64) and arm64 (EM_AARCH64) binaries built by Go 1.17 or
// later (the register ABI) are supported. ctxwatch attaches only to amd64
// processes; arm64 binaries are inspected (functions, RET instructions,
// probe points, file offsets, types) but the probes are not run on arm64. The binary is treated as untrusted input: section sizes
// are capped before they are read and the pclntab magic is checked.
package target

import (
	"debug/buildinfo"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/ctxwatch/ctxwatch/internal/pcln"
)

// Sentinel errors; callers test for them with errors.Is.
var (
	ErrNotGo    = errors.New("not a Go binary")          // no build info / no .gopclntab
	ErrArch     = errors.New("unsupported architecture") // only amd64 and arm64
	ErrGoTooOld = errors.New("Go version too old")       // older than go1.17 (no register ABI)
	ErrNoSymbol = errors.New("symbol not found")         // e.g. inlined function
	ErrNoLayout = errors.New("no layout information")    // no DWARF, stripped
)

// supported is appended to Open's errors so the user learns what works.
const supported = "ctxwatch supports Go 1.17+ on amd64 (arm64: inspection only)"

// Size caps applied to data read from the binary.
const (
	maxPclntab   = 512 << 20 // .gopclntab
	maxSymtab    = 512 << 20 // .symtab
	maxDWARF     = 1 << 30   // all .debug_* sections together
	maxFuncBytes = 4 << 20   // machine code of a single function
)

// Module is a module recorded in the binary's build information.
type Module struct{ Path, Version string }

// Binary is an opened Go executable. Its methods are safe for concurrent use.
type Binary struct {
	Path       string
	GoVersion  string // as in build info, e.g. "go1.26.8"
	MainModule string // main module path from build info (may be "command-line-arguments")
	// MainPackage is the main package's import path ("cmd/go" for the go
	// command, whose main module is empty).
	MainPackage string
	Modules     []Module // dependencies from build info
	Stripped    bool     // no .symtab
	HasDWARF    bool
	PIE         bool // ET_DYN
	// Arch is the GOARCH: "amd64" or "arm64".
	Arch string

	file    *os.File
	elf     *elf.File
	funcs   []Func          // sorted by Entry, from .gopclntab
	syms    map[string]Func // from .symtab (nil if stripped)
	byNam   map[string]int  // index into funcs by name
	types   uint64          // address of runtime.types, 0 if unknown
	typeSrc string          // how types was found, for error messages

	dwarfOnce sync.Once
	dwarfMu   sync.Mutex // guards dw (dwarf.Data caches types internally)
	dw        *dwarfIndex
	dwarfErr  error
}

// Open inspects the executable at path. Errors wrap ErrNotGo, ErrArch or
// ErrGoTooOld and say what is supported.
func Open(path string) (*Binary, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	b, err := inspect(path, osf)
	if err != nil {
		osf.Close()
		return nil, err
	}
	return b, nil
}

func inspect(path string, osf *os.File) (*Binary, error) {
	ef, err := elf.NewFile(osf)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w (not an ELF file: %v); %s", path, ErrNotGo, err, supported)
	}
	bi, err := buildinfo.Read(osf)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w (no Go build info); %s", path, ErrNotGo, supported)
	}
	if ef.Machine != elf.EM_X86_64 && ef.Machine != elf.EM_AARCH64 {
		return nil, fmt.Errorf("inspect %s: %w %s (%s); %s", path, ErrArch, machineName(ef.Machine), bi.GoVersion, supported)
	}
	if ef.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("inspect %s: %w %v; %s", path, ErrArch, ef.Class, supported)
	}
	if !goVersionAtLeast(bi.GoVersion, 1, 17) {
		return nil, fmt.Errorf("inspect %s: %w: built with %s; %s", path, ErrGoTooOld, bi.GoVersion, supported)
	}
	b := &Binary{
		Path:        path,
		GoVersion:   bi.GoVersion,
		MainModule:  bi.Main.Path,
		MainPackage: bi.Path,
		PIE:         ef.Type == elf.ET_DYN,
		Arch:        machineName(ef.Machine),
		file:        osf,
		elf:         ef,
	}
	for _, m := range bi.Deps {
		// Keep the required path (symbols use it); take the version of a
		// versioned replacement.
		mod := Module{Path: m.Path, Version: m.Version}
		if m.Replace != nil && m.Replace.Version != "" {
			mod.Version = m.Replace.Version
		}
		b.Modules = append(b.Modules, mod)
	}
	for _, s := range ef.Sections {
		if strings.HasPrefix(s.Name, ".debug_info") || strings.HasPrefix(s.Name, ".zdebug_info") {
			b.HasDWARF = true
		}
	}
	if err := b.loadPclntab(); err != nil {
		return nil, fmt.Errorf("inspect %s: %w; %s", path, err, supported)
	}
	if err := b.loadSymtab(); err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	return b, nil
}

// Close releases the underlying file.
func (b *Binary) Close() error {
	return b.file.Close()
}

// machineName returns the Go GOARCH name for m when there is one.
func machineName(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_386:
		return "386"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_PPC64:
		return "ppc64"
	case elf.EM_S390:
		return "s390x"
	case elf.EM_RISCV:
		return "riscv64"
	case elf.EM_MIPS:
		return "mips"
	case elf.EM_LOONGARCH:
		return "loong64"
	}
	return m.String()
}

// goVersionAtLeast reports whether the build-info Go version v (e.g.
// "go1.26.8", "go1.21rc2", "go1.9") is at least major.minor. Development
// versions ("devel ...") count as new; unparsable versions as old.
func goVersionAtLeast(v string, major, minor int) bool {
	if strings.HasPrefix(v, "devel") {
		return true
	}
	maj, min, ok := parseGoVersion(v)
	if !ok {
		return false
	}
	return maj > major || maj == major && min >= minor
}

// parseGoVersion extracts major and minor from "goX.Y[.Z|rcN|betaN][ extra]".
func parseGoVersion(v string) (major, minor int, ok bool) {
	v, found := strings.CutPrefix(v, "go")
	if !found {
		return 0, 0, false
	}
	if i := strings.IndexAny(v, " -+"); i >= 0 {
		v = v[:i]
	}
	majS, rest, found := strings.Cut(v, ".")
	if !found {
		return 0, 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	major, err1 := strconv.Atoi(majS)
	minor, err2 := strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return major, minor, true
}

// pclntab magic numbers, by Go version.
const (
	pclnMagic12  = 0xfffffffb
	pclnMagic116 = 0xfffffffa
	pclnMagic118 = 0xfffffff0
	pclnMagic120 = 0xfffffff1
)

// loadPclntab reads the function table from .gopclntab.
func (b *Binary) loadPclntab() error {
	sec := b.elf.Section(".gopclntab")
	if sec == nil {
		// PIE binaries of Go 1.19 and older keep it in relocated data.
		sec = b.elf.Section(".data.rel.ro.gopclntab")
	}
	if sec == nil {
		return fmt.Errorf("%w (no .gopclntab section)", ErrNotGo)
	}
	if sec.Type == elf.SHT_NOBITS || sec.Size > maxPclntab {
		return fmt.Errorf("%w (.gopclntab size %d invalid or over %d)", ErrNotGo, sec.Size, maxPclntab)
	}
	data, err := sec.Data()
	if err != nil {
		return fmt.Errorf("read .gopclntab: %w", err)
	}
	if len(data) < 16 {
		return fmt.Errorf("%w (.gopclntab too short)", ErrNotGo)
	}
	switch magic := binary.LittleEndian.Uint32(data); magic {
	case pclnMagic116, pclnMagic118, pclnMagic120:
	case pclnMagic12:
		return fmt.Errorf("%w: .gopclntab is from before Go 1.16", ErrGoTooOld)
	default:
		return fmt.Errorf("%w (bad .gopclntab magic %#x)", ErrNotGo, magic)
	}
	// The pc quantum: 1 on amd64, 4 on arm64; pointers of 8 bytes.
	quantum := byte(1)
	if b.Arch == "arm64" {
		quantum = 4
	}
	if data[4] != 0 || data[5] != 0 || data[6] != quantum || data[7] != 8 {
		return fmt.Errorf("%w (.gopclntab header %x is not %s)", ErrNotGo, data[:8], b.Arch)
	}
	// Entries are relative to runtime.text, which external linking (cgo)
	// moves away from the start of .text.
	textStart, err := pcln.TextStart(b.elf)
	if err != nil {
		return fmt.Errorf("locate runtime.text: %w", err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, textStart))
	if err != nil {
		return fmt.Errorf("parse .gopclntab: %w", err)
	}
	b.funcs = make([]Func, 0, len(tab.Funcs))
	b.byNam = make(map[string]int, len(tab.Funcs))
	for _, f := range tab.Funcs {
		b.funcs = append(b.funcs, Func{Name: f.Name, Entry: f.Entry, End: f.End})
	}
	sort.Slice(b.funcs, func(i, j int) bool { return b.funcs[i].Entry < b.funcs[j].Entry })
	for i, f := range b.funcs {
		if _, dup := b.byNam[f.Name]; !dup {
			b.byNam[f.Name] = i
		}
	}
	return nil
}

// loadSymtab reads function symbols and runtime.types from .symtab.
func (b *Binary) loadSymtab() error {
	if s := b.elf.SectionByType(elf.SHT_SYMTAB); s != nil && s.Size > maxSymtab {
		return fmt.Errorf("read .symtab: size %d over limit %d", s.Size, maxSymtab)
	}
	syms, err := b.elf.Symbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		b.Stripped = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("read .symtab: %w", err)
	}
	b.syms = make(map[string]Func)
	for _, s := range syms {
		switch {
		case elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0:
			if _, dup := b.syms[s.Name]; !dup {
				b.syms[s.Name] = Func{Name: s.Name, Entry: s.Value, End: s.Value + s.Size}
			}
		case s.Name == "runtime.types":
			b.types = s.Value
			b.typeSrc = "symbol runtime.types"
		}
	}
	return nil
}

// readCode reads n bytes at virtual address addr of an executable segment.
func (b *Binary) readCode(addr, n uint64) ([]byte, error) {
	if n > maxFuncBytes {
		return nil, fmt.Errorf("read code at %#x: length %d over limit %d", addr, n, maxFuncBytes)
	}
	off, err := b.FileOffset(addr)
	if err != nil {
		return nil, err
	}
	if end, err := b.FileOffset(addr + n - 1); err != nil || end != off+n-1 {
		return nil, fmt.Errorf("read code at %#x: %d bytes leave the segment", addr, n)
	}
	buf := make([]byte, n)
	if _, err := b.file.ReadAt(buf, int64(off)); err != nil {
		return nil, fmt.Errorf("read code at %#x: %w", addr, err)
	}
	return buf, nil
}

// dwarfData returns the parsed DWARF index, loading it on first use.
func (b *Binary) dwarfData() (*dwarfIndex, error) {
	b.dwarfOnce.Do(func() {
		if !b.HasDWARF {
			b.dwarfErr = fmt.Errorf("%w: %s has no DWARF (stripped?)", ErrNoLayout, b.Path)
			return
		}
		var total uint64
		for _, s := range b.elf.Sections {
			if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
				total += s.Size
			}
		}
		if total > maxDWARF {
			b.dwarfErr = fmt.Errorf("read DWARF of %s: %w: %d bytes over limit %d", b.Path, ErrNoLayout, total, maxDWARF)
			return
		}
		d, err := b.elf.DWARF()
		if err != nil {
			b.dwarfErr = fmt.Errorf("read DWARF of %s: %w: %v", b.Path, ErrNoLayout, err)
			return
		}
		b.dw, b.dwarfErr = indexDWARF(d)
		if b.dwarfErr != nil {
			b.dwarfErr = fmt.Errorf("read DWARF of %s: %w", b.Path, b.dwarfErr)
		}
	})
	return b.dw, b.dwarfErr
}
