// Package target inspects a Go ELF executable without running it: build
// information, functions and their machine code, the file offsets a uprobe
// needs, and the layout of Go types recorded in DWARF.
//
// amd64 (EM_X86_64) and arm64 (EM_AARCH64) binaries built by Go 1.17 or
// later (the register ABI) are supported; ctxwatch attaches to the
// processes of its own architecture. The binary is treated as untrusted
// input: section sizes
// are capped before they are read and the pclntab magic is checked.
package target

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/ctxwatch/ctxwatch/internal/pcln"
)

// Sentinel errors; callers test for them with errors.Is.
var (
	ErrNotGo    = errors.New("not a Go binary")          // no build info / no .gopclntab
	ErrArch     = errors.New("unsupported architecture") // only amd64 and arm64
	ErrGoTooOld = errors.New("Go version too old")       // older than go1.17 (no register ABI)
	ErrNoSymbol = errors.New("symbol not found")         // e.g. inlined function
	ErrCorrupt  = errors.New("corrupt Go binary")        // Go build info, but a .gopclntab that does not parse
	ErrNoLayout = errors.New("no layout information")    // no DWARF, stripped
)

// hasGoNote reports whether the first pages of an ELF image hold the
// note cmd/link writes at the start of every Go binary: name "Go", type 4
// (ELF_NOTE_GOBUILDID_TAG).
func hasGoNote(image []byte) bool {
	head := image[:min(len(image), 64<<10)]
	for i := 0; ; {
		j := bytes.Index(head[i:], []byte("Go\x00\x00"))
		if j < 0 {
			return false
		}
		at := i + j
		if at >= 12 && binary.LittleEndian.Uint32(head[at-12:]) == 4 && binary.LittleEndian.Uint32(head[at-4:]) == 4 {
			return true
		}
		i = at + 1
	}
}

// supported is appended to Open's errors so the user learns what works.
const supported = "ctxwatch supports Go 1.17+ on amd64 and arm64"

// Size caps applied to data read from the binary.
const (
	maxPclntab   = 512 << 20 // .gopclntab
	maxSymtab    = 512 << 20 // .symtab
	maxDWARF     = 1 << 30   // all .debug_* sections together
	maxFuncBytes = 4 << 20   // machine code of a single function
	maxFile      = 4 << 30   // the executable
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
	image   []byte // the file, mapped read-only (see Open)
	elf     *elf.File
	table   *pcln.Table
	funcs   []pcln.Func     // sorted by Entry, from .gopclntab; names stay in the table
	syms    map[string]Func // from .symtab (nil if stripped)
	types   uint64          // address of runtime.types, 0 if unknown
	typeSrc string          // how types was found, for error messages

	dwarfOnce sync.Once
	dwarfMu   sync.Mutex // guards dw (dwarf.Data caches types internally)
	dw        *dwarfIndex
	dwarfErr  error

	// The static itabs of context.Context, read once (contextItabs):
	// both the wrappers and the walk's known itabs come from them.
	itabsOnce sync.Once
	ctxIface  uint64
	ctxItabs  []contextItab
	itabsErr  error
}

// Open inspects the executable at path. Errors wrap ErrNotGo, ErrArch,
// ErrGoTooOld or ErrCorrupt and say what is supported.
//
// The file is mapped into memory, not read: the sections of a large binary
// are used in place, and only the pages touched are read from disk. A
// running executable cannot be written (ETXTBSY), so the mapping does not
// change under ctxwatch.
func Open(path string) (*Binary, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	st, err := osf.Stat()
	if err != nil {
		osf.Close()
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	if st.Size() == 0 || st.Size() > maxFile {
		osf.Close()
		return nil, fmt.Errorf("inspect %s: %w (size %d bytes, want 1 to %d)", path, ErrNotGo, st.Size(), int64(maxFile))
	}
	image, err := syscall.Mmap(int(osf.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		osf.Close()
		return nil, fmt.Errorf("inspect %s: map the file: %w", path, err)
	}
	b, err := inspect(path, osf, image)
	if err != nil {
		syscall.Munmap(image)
		osf.Close()
		return nil, err
	}
	return b, nil
}

func inspect(path string, osf *os.File, image []byte) (*Binary, error) {
	ef, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		// Go puts the section headers at the end of the file: a Go
		// binary cut short loses them, but keeps the Go build ID note
		// that the linker puts first.
		if bytes.HasPrefix(image, []byte(elf.ELFMAG)) && hasGoNote(image) {
			return nil, fmt.Errorf("inspect %s: %w: truncated or damaged (its ELF headers do not parse: %v); %s", path, ErrCorrupt, err, supported)
		}
		return nil, fmt.Errorf("inspect %s: %w (not an ELF file: %v); %s", path, ErrNotGo, err, supported)
	}
	bi, err := buildinfo.Read(bytes.NewReader(image))
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
		image:       image,
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
	marks, err := b.loadSymtab()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	if err := b.loadPclntab(marks); err != nil {
		return nil, fmt.Errorf("inspect %s: %w; %s", path, err, supported)
	}
	return b, nil
}

// Close releases the file and its mapping; the Binary, and the Table from
// LineTable, are unusable after it.
func (b *Binary) Close() error {
	err := syscall.Munmap(b.image)
	b.image = nil
	return errors.Join(err, b.file.Close())
}

// LineTable returns the binary's pcln table, for symbolizing pcs. It reads
// the binary's mapping: use it only until Close.
func (b *Binary) LineTable() *pcln.Table {
	return b.table
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

// loadPclntab reads the function table from .gopclntab; marks are symbol
// values from loadSymtab (nil when stripped).
func (b *Binary) loadPclntab(marks map[string]uint64) error {
	sec := b.elf.Section(".gopclntab")
	if sec == nil {
		// PIE binaries of Go 1.19 and older keep it in relocated data.
		sec = b.elf.Section(".data.rel.ro.gopclntab")
	}
	if sec == nil {
		return fmt.Errorf("%w (no .gopclntab section)", ErrNotGo)
	}
	// The build info says Go: from here on, what does not parse is a
	// damaged Go binary (a truncated copy, a bad patch), not another
	// kind of program.
	if sec.Type == elf.SHT_NOBITS || sec.Size > maxPclntab {
		return fmt.Errorf("%w (.gopclntab size %d invalid or over %d)", ErrCorrupt, sec.Size, maxPclntab)
	}
	data, err := b.section(sec)
	if err != nil {
		return fmt.Errorf("%w: read .gopclntab: %w", ErrCorrupt, err)
	}
	if len(data) < 16 {
		return fmt.Errorf("%w (.gopclntab too short)", ErrCorrupt)
	}
	switch magic := binary.LittleEndian.Uint32(data); magic {
	case pclnMagic116, pclnMagic118, pclnMagic120:
	case pclnMagic12:
		return fmt.Errorf("%w: .gopclntab is from before Go 1.16", ErrGoTooOld)
	default:
		return fmt.Errorf("%w (bad .gopclntab magic %#x)", ErrCorrupt, magic)
	}
	// The pc quantum: 1 on amd64, 4 on arm64; pointers of 8 bytes.
	quantum := byte(1)
	if b.Arch == "arm64" {
		quantum = 4
	}
	if data[4] != 0 || data[5] != 0 || data[6] != quantum || data[7] != 8 {
		return fmt.Errorf("%w (.gopclntab header %x is not %s)", ErrCorrupt, data[:8], b.Arch)
	}
	// Entries are relative to runtime.text, which external linking (cgo)
	// moves away from the start of .text: pcln finds it.
	var symbol func(string) (uint64, bool)
	if marks != nil {
		symbol = func(name string) (uint64, bool) { v, ok := marks[name]; return v, ok }
	}
	b.table, err = pcln.NewMapped(b.elf, b.image, symbol)
	if err != nil {
		return fmt.Errorf("%w: parse .gopclntab: %w", ErrCorrupt, err)
	}
	b.funcs, err = b.table.Funcs()
	if err != nil {
		return fmt.Errorf("%w: parse .gopclntab: %w", ErrCorrupt, err)
	}
	return nil
}

// loadSymtab finds the few symbols ctxwatch uses in .symtab: runtime.types
// (kept) and runtime.text and go:func.* (returned, for the pcln table). It
// scans the table in place for them rather than decoding every symbol (a
// large binary has hundreds of thousands); functions come from the pclntab,
// which stripped binaries have too.
func (b *Binary) loadSymtab() (map[string]uint64, error) {
	symtab := b.elf.SectionByType(elf.SHT_SYMTAB)
	if symtab == nil {
		b.Stripped = true
		return nil, nil
	}
	if symtab.Size > maxSymtab {
		return nil, fmt.Errorf("read .symtab: size %d over limit %d", symtab.Size, maxSymtab)
	}
	if int(symtab.Link) >= len(b.elf.Sections) {
		return nil, fmt.Errorf("read .symtab: string table index %d out of range", symtab.Link)
	}
	syms, err := b.section(symtab)
	if err != nil {
		return nil, fmt.Errorf("read .symtab: %w", err)
	}
	strtab, err := b.section(b.elf.Sections[symtab.Link])
	if err != nil {
		return nil, fmt.Errorf("read .symtab strings: %w", err)
	}
	want := [][]byte{[]byte("runtime.types\x00"), []byte("runtime.text\x00"), []byte("go:func.*\x00"), []byte("go.func.*\x00")}
	var first [256]bool // the wanted names' first bytes: most symbols differ there
	for _, w := range want {
		first[w[0]] = true
	}
	marks := make(map[string]uint64)
	const symSize = 24 // Elf64_Sym: name u32, info, other u8, shndx u16, value, size u64
	for off := symSize; off+symSize <= len(syms); off += symSize {
		name := uint64(binary.LittleEndian.Uint32(syms[off:]))
		if name >= uint64(len(strtab)) || !first[strtab[name]] {
			continue
		}
		for _, w := range want {
			if bytes.HasPrefix(strtab[name:], w) {
				marks[string(w[:len(w)-1])] = binary.LittleEndian.Uint64(syms[off+8:])
			}
		}
	}
	if v, ok := marks["runtime.types"]; ok {
		b.types = v
		b.typeSrc = "symbol runtime.types"
	}
	return marks, nil
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
	// Not off+n: a segment's offset comes from the file and may be
	// near 2^64, where the sum wraps.
	if off > uint64(len(b.image)) || n > uint64(len(b.image))-off {
		return nil, fmt.Errorf("read code at %#x: %d bytes beyond the end of the file", addr, n)
	}
	return b.image[off : off+n : off+n], nil
}

// section returns the bytes of an uncompressed section, in place.
func (b *Binary) section(s *elf.Section) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, fmt.Errorf("section %s has no plain file data", s.Name)
	}
	if s.Offset > uint64(len(b.image)) || s.Size > uint64(len(b.image))-s.Offset {
		return nil, fmt.Errorf("section %s: [%#x,+%#x) beyond the file's %d bytes", s.Name, s.Offset, s.Size, len(b.image))
	}
	return b.image[s.Offset : s.Offset+s.Size : s.Offset+s.Size], nil
}

// dwarfSize returns the size of a DWARF section once decompressed. For
// SHF_COMPRESSED sections debug/elf gives it from the section's header;
// a GNU .zdebug_ section gives it after "ZLIB" in its first 12 bytes, which
// debug/elf reads only when the section is read: without this, a small
// section could make it decompress up to 2^64 bytes.
func dwarfSize(image []byte, s *elf.Section) uint64 {
	if !strings.HasPrefix(s.Name, ".zdebug_") || s.Flags&elf.SHF_COMPRESSED != 0 || s.Type == elf.SHT_NOBITS {
		return s.Size
	}
	if s.Offset > uint64(len(image)) || uint64(len(image))-s.Offset < 12 {
		return s.Size
	}
	if hdr := image[s.Offset:]; string(hdr[:4]) == "ZLIB" {
		return max(s.Size, binary.BigEndian.Uint64(hdr[4:12]))
	}
	return s.Size
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
				// Capped before the sum, which could wrap otherwise.
				total += min(dwarfSize(b.image, s), maxDWARF+1)
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
