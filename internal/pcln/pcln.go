// Package pcln symbolizes program counters of a Go amd64 ELF executable
// using its .gopclntab, including the inline tree, so that a pc inside
// inlined code expands into every logical (source) frame, as the Go
// runtime's own runtime.CallersFrames does.
//
// The package mirrors the runtime's logic in runtime/symtab.go
// (findfunc, pcvalue, funcline1, funcdata) and runtime/symtabinl.go
// (inlineUnwinder). It never trusts the binary: every offset is bounds
// checked and malformed input yields an error, never a panic.
//
// Supported pclntab formats:
//
//   - 0xfffffff1: Go 1.20 and later (tested with Go 1.26). _func has
//     startLine; inlinedCall is {funcID, _[3], nameOff, parentPc, startLine}.
//
//   - 0xfffffff0: Go 1.18 and 1.19. _func has no startLine; inlinedCall is
//     {parent int16, funcID, _, file, line, func_, parentPc}. Implemented from
//     the Go 1.18/1.19 runtime sources but not exercised by the tests.
//
//   - 0xfffffffa: Go 1.16 and 1.17. The function table holds absolute
//     entry addresses ({entry, funcoff uintptr}); _func starts with its entry
//     address; funcdata are absolute pointers (8-byte aligned after the
//     pcdata), so the inline tree is found by address; inlinedCall has the
//     Go 1.18/1.19 layout. Tested with Go 1.17 (see the compat matrix).
//
// Older tables (Go 1.2-1.15: 0xfffffffb) are rejected with
// ErrUnsupportedVersion.
//
// Limitations: pcs must be link-time virtual addresses (for PIE binaries
// subtract the load bias first); a single text section is assumed (true for
// amd64 binaries); only little-endian 64-bit ELF is accepted.
package pcln

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Frame is one logical (source-level) frame.
type Frame struct {
	Function string // full name, e.g. "main.handle"; generic shapes are printed as "[...]" like the runtime does
	File     string
	Line     int
	PC       uint64 // the pc this frame was derived from (for outer frames of an inlined call: entry+parentPc)
	Inlined  bool   // true for a frame that was inlined into the next (outer) frame

	StartLine int // line of the func keyword of Function, 0 if unknown (Go 1.18/1.19 inlined frames)
}

// Errors returned by this package. Errors may wrap these.
var (
	ErrNoPclntab          = errors.New("pcln: no .gopclntab section")
	ErrUnsupportedVersion = errors.New("pcln: unsupported pclntab version")
	ErrCorrupt            = errors.New("pcln: corrupt pclntab")
	ErrNoFunc             = errors.New("pcln: pc not in any function")
	ErrNoGofunc           = errors.New("pcln: cannot locate go:func.* (moduledata.gofunc)")
)

const (
	magic118 = 0xfffffff0
	magic120 = 0xfffffff1
	magic116 = 0xfffffffa
	magic12  = 0xfffffffb

	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3

	maxSectionSize = 1 << 30 // cap on any section we read
	maxInlineDepth = 1 << 10 // cap on the length of an inline chain
	maxInlIndex    = 1 << 20 // the runtime's own cap (*[1 << 20]inlinedCall)
	// maxFuncs caps nfunc, which sizes the slice Funcs returns (24 bytes
	// a function): large binaries have a few hundred thousand functions.
	maxFuncs = 1 << 22
)

// Table is a parsed pcln table. It is immutable after New and safe for
// concurrent use.
type Table struct {
	magic   uint32
	ptrSize int
	minLC   uint32 // pc quantum (1 on amd64)

	funcnametab []byte
	cutab       []byte
	filetab     []byte
	pctab       []byte
	pclntable   []byte // "funcdata" in debug/gosym: ftab followed by _func records
	nfunc       int

	text uint64 // moduledata.text / runtime.text: base of entryOff

	// gofunc is the address of go:func.* (moduledata.gofunc) and gofuncData
	// the file bytes from that address to the end of its section. nil if
	// unknown, in which case inline trees are not expanded.
	gofunc     uint64
	gofuncData []byte
	gofuncFrom string // how gofunc was found: "symtab" or "moduledata"

	// Go 1.16/1.17 tables only: pclntableOff is the offset of pclntable
	// in .gopclntab (for the alignment of funcdata), and dataAt reads the
	// file bytes at a link-time address (inline trees are found by their
	// absolute address).
	pclntableOff uint64
	dataAt       func(addr uint64) ([]byte, error)
}

// New parses the pcln table of an ELF file (open with debug/elf by the
// caller), reading the sections it needs.
func New(f *elf.File) (*Table, error) {
	return newTable(image{f: f}, nil)
}

// NewMapped parses the pcln table of an ELF file whose bytes the caller
// holds in memory, file (for example mapped with mmap), which must stay
// unchanged while the Table is used: the table's sections are slices of it,
// never copies. symbol, when not nil, looks up a symbol of the file's symbol
// table, so that the caller's reading of it serves here too.
func NewMapped(f *elf.File, file []byte, symbol func(name string) (uint64, bool)) (*Table, error) {
	return newTable(image{f: f, file: file}, symbol)
}

// image reads an ELF file's sections: slices of the file's bytes when it
// has them, else copies read through debug/elf.
type image struct {
	f    *elf.File
	file []byte
}

func (im image) section(s *elf.Section) ([]byte, error) {
	if s.Size > maxSectionSize {
		return nil, fmt.Errorf("section %s too large (%d bytes)", s.Name, s.Size)
	}
	if im.file != nil && s.Type != elf.SHT_NOBITS && s.Flags&elf.SHF_COMPRESSED == 0 {
		if s.Offset > uint64(len(im.file)) || s.Size > uint64(len(im.file))-s.Offset {
			return nil, fmt.Errorf("section %s: [%#x,+%#x) beyond the file's %d bytes", s.Name, s.Offset, s.Size, len(im.file))
		}
		return im.file[s.Offset : s.Offset+s.Size : s.Offset+s.Size], nil
	}
	return s.Data()
}

// dataAt returns the bytes of the allocated section containing addr, from
// addr to the end of the section.
func (im image) dataAt(addr uint64) ([]byte, error) {
	for _, s := range im.f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS {
			continue
		}
		if addr >= s.Addr && addr-s.Addr < s.Size {
			d, err := im.section(s)
			if err != nil {
				return nil, err
			}
			off := addr - s.Addr
			if off >= uint64(len(d)) {
				return nil, fmt.Errorf("address %#x beyond data of %s", addr, s.Name)
			}
			return d[off:], nil
		}
	}
	return nil, fmt.Errorf("address %#x not in any section with data", addr)
}

// symbols returns a lookup over f's symbol table, read once, or nil when f
// has none.
func symbols(f *elf.File) func(string) (uint64, bool) {
	syms, err := f.Symbols()
	if err != nil {
		return nil
	}
	return func(name string) (uint64, bool) {
		for _, s := range syms {
			if s.Name == name {
				return s.Value, true
			}
		}
		return 0, false
	}
}

func newTable(im image, symbol func(string) (uint64, bool)) (*Table, error) {
	f := im.f
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("pcln: only little-endian 64-bit ELF is supported")
	}
	ps := PclntabSection(f)
	if ps == nil || ps.Type == elf.SHT_NOBITS {
		return nil, ErrNoPclntab
	}
	pcln, err := im.section(ps)
	if err != nil {
		return nil, fmt.Errorf("pcln: reading .gopclntab: %w", err)
	}
	t, err := parseHeader(pcln)
	if err != nil {
		return nil, err
	}
	if t.magic == magic116 {
		// Entries and funcdata are absolute addresses: no runtime.text or
		// go:func.* is needed.
		if ps.Addr%8 != 0 {
			return nil, fmt.Errorf("%w: .gopclntab at %#x is not 8-byte aligned", ErrCorrupt, ps.Addr)
		}
		// The caller may close f after New: read the sections funcdata
		// can point into (read-only data; relocated data in PIE) now.
		var secs []loadedSection
		var total uint64
		for _, s := range f.Sections {
			if s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_EXECINSTR != 0 || s.Type == elf.SHT_NOBITS || s == ps {
				continue
			}
			if total += s.Size; total > maxSectionSize {
				return nil, fmt.Errorf("pcln: data sections over %d bytes", maxSectionSize)
			}
			d, err := im.section(s)
			if err != nil {
				return nil, fmt.Errorf("pcln: reading %s: %w", s.Name, err)
			}
			secs = append(secs, loadedSection{s.Addr, d})
		}
		secs = append(secs, loadedSection{ps.Addr, pcln})
		t.dataAt = func(addr uint64) ([]byte, error) {
			for _, s := range secs {
				if addr >= s.addr && addr-s.addr < uint64(len(s.data)) {
					return s.data[addr-s.addr:], nil
				}
			}
			return nil, fmt.Errorf("address %#x not in any data section", addr)
		}
		return t, nil
	}

	// Locate runtime.text and go:func.*: from the symbol table when
	// present, else from the runtime's moduledata.
	if symbol == nil {
		symbol = symbols(f)
	}
	var haveText bool
	if symbol != nil {
		t.text, haveText = symbol("runtime.text")
		for _, name := range []string{"go:func.*", "go.func.*"} {
			if v, ok := symbol(name); ok {
				t.gofunc, t.gofuncFrom = v, "symtab"
				break
			}
		}
	}
	if t.gofuncFrom == "" || !haveText {
		if md, err := findModuledata(im, ps.Addr, t); err == nil {
			if !haveText {
				t.text, haveText = md.text, true
			}
			if t.gofuncFrom == "" {
				t.gofunc, t.gofuncFrom = md.gofunc, "moduledata"
			}
		}
	}
	if !haveText {
		if ts := f.Section(".text"); ts != nil {
			t.text = ts.Addr
		} else {
			return nil, fmt.Errorf("pcln: cannot determine text start")
		}
	}
	// Without go:func.*, functions are still found; only inline trees are
	// not expanded (Frames says so with ErrNoGofunc).
	if t.gofuncFrom != "" {
		data, err := im.dataAt(t.gofunc)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoGofunc, err)
		}
		t.gofuncData = data
	}
	return t, nil
}

// Func is a function of the table: where its name is and its [Entry, End)
// range, End being the next function's entry (alignment padding included).
type Func struct {
	Entry, End uint64
	nameOff    int32
}

// Funcs lists the table's functions in address order, without their names
// (a large binary has hundreds of thousands; see Name and NameBytes).
func (t *Table) Funcs() ([]Func, error) {
	funcs := make([]Func, 0, t.nfunc)
	le := binary.LittleEndian
	for i := 0; i < t.nfunc; i++ {
		entry, off := t.ftabEntry(i)
		end, _ := t.ftabEntry(i + 1)
		if end < entry {
			return nil, fmt.Errorf("%w: ftab not sorted at %d", ErrCorrupt, i)
		}
		// The name offset follows the entry: a 4-byte entryOff (Go 1.18+)
		// or an 8-byte entry (Go 1.16/1.17).
		nameAt := off + 4
		if t.magic == magic116 {
			nameAt = off + 8
		}
		if nameAt+4 > uint64(len(t.pclntable)) {
			return nil, fmt.Errorf("%w: _func offset %#x out of range", ErrCorrupt, off)
		}
		funcs = append(funcs, Func{Entry: entry, End: end, nameOff: int32(le.Uint32(t.pclntable[nameAt:]))})
	}
	return funcs, nil
}

// Name returns f's name.
func (t *Table) Name(f Func) string { return t.funcName(f.nameOff) }

// NameBytes returns f's name as bytes of the table itself, without a copy:
// the caller must not modify them or keep them past the table's data.
func (t *Table) NameBytes(f Func) []byte {
	off := int64(f.nameOff)
	if off < 0 || off >= int64(len(t.funcnametab)) {
		return nil
	}
	b := t.funcnametab[off:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i:i]
	}
	return nil
}

// NameIs says whether f's name is name, reading no further into the
// table than name's length and the NUL after it: a lookup by name over
// every function (Binary.Func) finds most names different at their first
// bytes, where NameBytes would first find each name's end.
func (t *Table) NameIs(f Func, name string) bool {
	off := int64(f.nameOff)
	if off < 0 || off+int64(len(name)) >= int64(len(t.funcnametab)) {
		return false
	}
	b := t.funcnametab[off:]
	return b[len(name)] == 0 && string(b[:len(name)]) == name
}

// loadedSection is a section's address and its bytes.
type loadedSection struct {
	addr uint64
	data []byte
}

// PclntabSection returns the section holding the pcln table: .gopclntab,
// or .data.rel.ro.gopclntab in PIE binaries of Go 1.19 and older (where the
// table is relocated data). nil if there is none.
func PclntabSection(f *elf.File) *elf.Section {
	if s := f.Section(".gopclntab"); s != nil {
		return s
	}
	return f.Section(".data.rel.ro.gopclntab")
}

// parseHeader parses a Go 1.18+ pcHeader (runtime/symtab.go) and the table
// offsets it contains.
func parseHeader(data []byte) (*Table, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("%w: header truncated", ErrCorrupt)
	}
	magic := binary.LittleEndian.Uint32(data)
	switch magic {
	case magic116, magic118, magic120:
	case magic12:
		return nil, fmt.Errorf("%w: magic %#x (Go 1.2-1.15); need Go 1.16+", ErrUnsupportedVersion, magic)
	default:
		return nil, fmt.Errorf("%w: bad magic %#x", ErrCorrupt, magic)
	}
	if data[4] != 0 || data[5] != 0 {
		return nil, fmt.Errorf("%w: bad header padding", ErrCorrupt)
	}
	minLC, ptrSize := data[6], data[7]
	if ptrSize != 8 {
		return nil, fmt.Errorf("%w: pointer size %d, want 8", ErrUnsupportedVersion, ptrSize)
	}
	if minLC != 1 && minLC != 2 && minLC != 4 {
		return nil, fmt.Errorf("%w: bad pc quantum %d", ErrCorrupt, minLC)
	}
	// magic, pad1, pad2, minLC, ptrSize; then 8 words:
	// nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset,
	// pctabOffset, pclnOffset. Go 1.16/1.17 have no textStart: 7 words.
	words := 8
	if magic == magic116 {
		words = 7
	}
	hdrSize := uint64(8 + 8*words)
	if uint64(len(data)) < hdrSize {
		return nil, fmt.Errorf("%w: header truncated", ErrCorrupt)
	}
	word := func(i int) uint64 {
		if magic == magic116 && i >= 2 {
			i-- // no textStart
		}
		return binary.LittleEndian.Uint64(data[8+8*i:])
	}
	sub := func(i int, what string) ([]byte, error) {
		off := word(i)
		if off < hdrSize || off > uint64(len(data)) {
			return nil, fmt.Errorf("%w: %s offset %#x out of range", ErrCorrupt, what, off)
		}
		return data[off:], nil
	}
	t := &Table{magic: magic, ptrSize: int(ptrSize), minLC: uint32(minLC)}
	nfunc := word(0)
	var err error
	if t.funcnametab, err = sub(3, "funcname"); err != nil {
		return nil, err
	}
	if t.cutab, err = sub(4, "cutab"); err != nil {
		return nil, err
	}
	if t.filetab, err = sub(5, "filetab"); err != nil {
		return nil, err
	}
	if t.pctab, err = sub(6, "pctab"); err != nil {
		return nil, err
	}
	if t.pclntable, err = sub(7, "pclntable"); err != nil {
		return nil, err
	}
	// ftab: nfunc+1 entries of {entryoff, funcoff uint32}, or of {entry,
	// funcoff uintptr} in Go 1.16/1.17.
	if nfunc == 0 || nfunc >= uint64(len(t.pclntable))/uint64(t.ftabSize()) {
		return nil, fmt.Errorf("%w: nfunc %d does not fit", ErrCorrupt, nfunc)
	}
	if nfunc > maxFuncs {
		return nil, fmt.Errorf("%w: nfunc %d over the limit of %d functions", ErrCorrupt, nfunc, maxFuncs)
	}
	t.nfunc = int(nfunc)
	t.pclntableOff = word(7)
	return t, nil
}

// ftabSize is the size of one functab entry.
func (t *Table) ftabSize() int {
	if t.magic == magic116 {
		return 16
	}
	return 8
}

// ftabEntry returns functab entry i (0 <= i <= nfunc): the function's entry
// address and the offset of its _func in pclntable. In bounds by parseHeader.
func (t *Table) ftabEntry(i int) (entry, funcOff uint64) {
	le := binary.LittleEndian
	if t.magic == magic116 {
		b := t.pclntable[16*i:]
		return le.Uint64(b), le.Uint64(b[8:])
	}
	b := t.pclntable[8*i:]
	return t.text + uint64(le.Uint32(b)), uint64(le.Uint32(b[4:]))
}

// funcInfo is a decoded runtime._func.
type funcInfo struct {
	entry     uint64
	end       uint64
	nameOff   int32
	pcfile    uint32
	pcln      uint32
	npcdata   uint32
	cuOffset  uint32
	startLine int32
	nfuncdata uint8
	raw       []byte // the _func record and its trailing pcdata/funcdata arrays
	hdrSize   int    // size of the fixed part of _func

	funcdataOff uint64 // offset of the funcdata array in raw
}

// findFunc mirrors runtime.findfunc (by binary search over ftab instead of
// the findfunctab buckets, which gives the same answer).
func (t *Table) findFunc(pc uint64) (funcInfo, error) {
	first, _ := t.ftabEntry(0)
	end, _ := t.ftabEntry(t.nfunc)
	if pc < first || pc < t.text || pc >= end {
		return funcInfo{}, fmt.Errorf("%w: %#x", ErrNoFunc, pc)
	}
	// Largest i in [0, nfunc) with ftab[i].entry <= pc.
	i := sort.Search(t.nfunc, func(i int) bool {
		e, _ := t.ftabEntry(i)
		return e > pc
	}) - 1
	if i < 0 {
		return funcInfo{}, fmt.Errorf("%w: %#x", ErrNoFunc, pc)
	}
	entry, funcOff := t.ftabEntry(i)
	next, _ := t.ftabEntry(i + 1)
	if next < entry {
		return funcInfo{}, fmt.Errorf("%w: ftab not sorted at %d", ErrCorrupt, i)
	}
	// Fixed part of _func: Go 1.20+ 44 bytes (with startLine), Go 1.18/1.19
	// 40, Go 1.16/1.17 44 (an 8-byte entry first, no startLine).
	hdr := 44
	if t.magic == magic118 {
		hdr = 40
	}
	if funcOff+uint64(hdr) > uint64(len(t.pclntable)) {
		return funcInfo{}, fmt.Errorf("%w: _func offset %#x out of range", ErrCorrupt, funcOff)
	}
	raw := t.pclntable[funcOff:]
	le := binary.LittleEndian
	fi := funcInfo{entry: entry, end: next, hdrSize: hdr}
	var recEntry uint64
	if t.magic == magic116 {
		recEntry = le.Uint64(raw)
		fi.nameOff = int32(le.Uint32(raw[8:]))
		fi.pcfile = le.Uint32(raw[24:])
		fi.pcln = le.Uint32(raw[28:])
		fi.npcdata = le.Uint32(raw[32:])
		fi.cuOffset = le.Uint32(raw[36:])
		fi.nfuncdata = raw[43]
	} else {
		recEntry = t.text + uint64(le.Uint32(raw))
		fi.nameOff = int32(le.Uint32(raw[4:]))
		fi.pcfile = le.Uint32(raw[20:])
		fi.pcln = le.Uint32(raw[24:])
		fi.npcdata = le.Uint32(raw[28:])
		fi.cuOffset = le.Uint32(raw[32:])
		if t.magic == magic118 {
			fi.nfuncdata = raw[39]
		} else {
			fi.startLine = int32(le.Uint32(raw[36:]))
			fi.nfuncdata = raw[43]
		}
	}
	if recEntry != entry {
		return funcInfo{}, fmt.Errorf("%w: _func entry %#x != ftab entry %#x", ErrCorrupt, recEntry, entry)
	}
	fi.funcdataOff = uint64(hdr) + 4*uint64(fi.npcdata)
	fdSize := uint64(4)
	if t.magic == magic116 {
		// funcdata are pointers, 8-byte aligned in memory (runtime.funcdata).
		fdSize = 8
		if (t.pclntableOff+funcOff+fi.funcdataOff)%8 != 0 {
			fi.funcdataOff += 4
		}
	}
	need := fi.funcdataOff + fdSize*uint64(fi.nfuncdata)
	if need > uint64(len(raw)) {
		return funcInfo{}, fmt.Errorf("%w: _func at %#x truncated", ErrCorrupt, funcOff)
	}
	fi.raw = raw[:need]
	return fi, nil
}

// cstring returns the NUL-terminated string at tab[off:].
func cstring(tab []byte, off int64) (string, bool) {
	if off < 0 || off >= int64(len(tab)) {
		return "", false
	}
	b := tab[off:]
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), true
		}
	}
	return "", false
}

func (t *Table) funcName(nameOff int32) string {
	s, ok := cstring(t.funcnametab, int64(nameOff))
	if !ok {
		return "?"
	}
	return s
}

// readvarint mirrors runtime.readvarint, with bounds checks.
func readvarint(p []byte) (n int, v uint32, ok bool) {
	var shift uint32
	for n < len(p) && n < 5 {
		b := p[n]
		n++
		v |= uint32(b&0x7f) << (shift & 31)
		if b&0x80 == 0 {
			return n, v, true
		}
		shift += 7
	}
	return 0, 0, false
}

// pcvalue mirrors runtime.pcvalue (non-strict): the value of the table at
// pctab[off:] for targetpc, or -1.
func (t *Table) pcvalue(f *funcInfo, off uint32, targetpc uint64) (int32, error) {
	if off == 0 {
		return -1, nil
	}
	if uint64(off) >= uint64(len(t.pctab)) {
		return -1, fmt.Errorf("%w: pc table offset %#x out of range", ErrCorrupt, off)
	}
	p := t.pctab[off:]
	pc := f.entry
	val := int32(-1)
	for len(p) > 0 {
		first := pc == f.entry // as runtime.pcvalue: step(p, &pc, &val, pc == f.entry())
		uvdelta := uint32(p[0])
		if uvdelta == 0 && !first {
			break
		}
		n, v, ok := readvarint(p)
		if !ok {
			break
		}
		uvdelta = v
		val += int32(-(uvdelta & 1) ^ (uvdelta >> 1))
		p = p[n:]
		n, pcdelta, ok := readvarint(p)
		if !ok {
			break
		}
		p = p[n:]
		pc += uint64(pcdelta) * uint64(t.minLC)
		if targetpc < pc {
			return val, nil
		}
	}
	// Table did not cover targetpc (runtime returns -1 when non-strict).
	return -1, nil
}

// pcdatavalue mirrors runtime.pcdatavalue1 (non-strict).
func (t *Table) pcdatavalue(f *funcInfo, table uint32, pc uint64) (int32, error) {
	if table >= f.npcdata {
		return -1, nil
	}
	off := binary.LittleEndian.Uint32(f.raw[f.hdrSize+4*int(table):])
	return t.pcvalue(f, off, pc)
}

// funcline mirrors runtime.funcline1 (non-strict): "?", 0 on failure.
func (t *Table) funcline(f *funcInfo, pc uint64) (string, int, error) {
	fileno, err := t.pcvalue(f, f.pcfile, pc)
	if err != nil {
		return "?", 0, err
	}
	line, err := t.pcvalue(f, f.pcln, pc)
	if err != nil {
		return "?", 0, err
	}
	if fileno == -1 || line == -1 {
		return "?", 0, nil
	}
	// funcfile: cutab[cuOffset+fileno] is an offset into filetab.
	idx := uint64(f.cuOffset) + uint64(uint32(fileno))
	if idx >= uint64(len(t.cutab))/4 {
		return "?", 0, nil
	}
	fileoff := binary.LittleEndian.Uint32(t.cutab[4*idx:])
	if fileoff == ^uint32(0) {
		return "?", 0, nil
	}
	file, ok := cstring(t.filetab, int64(fileoff))
	if !ok {
		return "?", 0, nil
	}
	return file, int(line), nil
}

// inlTree returns the inline tree of f (nil if none), mirroring
// runtime.funcdata(f, FUNCDATA_InlTree).
func (t *Table) inlTree(f *funcInfo) ([]byte, error) {
	if funcdataInlTree >= int(f.nfuncdata) {
		return nil, nil
	}
	if t.magic == magic116 {
		addr := binary.LittleEndian.Uint64(f.raw[f.funcdataOff+8*funcdataInlTree:])
		if addr == 0 {
			return nil, nil
		}
		tree, err := t.dataAt(addr)
		if err != nil {
			return nil, fmt.Errorf("%w: inline tree at %#x: %v", ErrCorrupt, addr, err)
		}
		return tree, nil
	}
	off := binary.LittleEndian.Uint32(f.raw[f.funcdataOff+4*funcdataInlTree:])
	if off == ^uint32(0) {
		return nil, nil
	}
	if t.gofuncData == nil {
		return nil, fmt.Errorf("%w: function has an inline tree", ErrNoGofunc)
	}
	if uint64(off) >= uint64(len(t.gofuncData)) {
		return nil, fmt.Errorf("%w: inline tree offset %#x beyond go:func.* data", ErrCorrupt, off)
	}
	return t.gofuncData[off:], nil
}

// inlinedCall is a decoded runtime.inlinedCall.
type inlinedCall struct {
	nameOff   int32
	parentPc  int32
	startLine int32
}

func (t *Table) inlEntry(tree []byte, index int32) (inlinedCall, error) {
	le := binary.LittleEndian
	size := 16 // Go 1.20+: funcID uint8, _ [3]byte, nameOff, parentPc, startLine int32
	if t.magic == magic118 || t.magic == magic116 {
		size = 20 // Go 1.16-1.19: parent int16, funcID, _ byte, file, line, func_, parentPc int32
	}
	if index < 0 || index >= maxInlIndex || int64(index+1)*int64(size) > int64(len(tree)) {
		return inlinedCall{}, fmt.Errorf("%w: inline tree index %d out of range", ErrCorrupt, index)
	}
	b := tree[int(index)*size:]
	if t.magic == magic118 || t.magic == magic116 {
		return inlinedCall{nameOff: int32(le.Uint32(b[12:])), parentPc: int32(le.Uint32(b[16:]))}, nil
	}
	return inlinedCall{
		nameOff:   int32(le.Uint32(b[4:])),
		parentPc:  int32(le.Uint32(b[8:])),
		startLine: int32(le.Uint32(b[12:])),
	}, nil
}

// Func returns the physical function containing pc (name, entry, end).
func (t *Table) Func(pc uint64) (name string, entry, end uint64, ok bool) {
	f, err := t.findFunc(pc)
	if err != nil {
		return "", 0, 0, false
	}
	return t.funcName(f.nameOff), f.entry, f.end, true
}

// Frames returns the logical frames at pc, innermost first: the inlined
// calls at pc (innermost first), then the physical function. pc is used as
// is (a "call pc"); for return addresses use FramesForReturn.
//
// It mirrors runtime.newInlineUnwinder/next/srcFunc/fileLine: the innermost
// frame's file:line is the pcln file:line at pc; each outer frame's pc is
// entry+parentPc of the inline tree entry for the frame inside it, and its
// file:line is the pcln file:line at that pc.
func (t *Table) Frames(pc uint64) ([]Frame, error) {
	f, err := t.findFunc(pc)
	if err != nil {
		return nil, err
	}
	tree, err := t.inlTree(&f)
	if err != nil {
		return nil, err
	}
	index := int32(-1)
	if tree != nil {
		if index, err = t.pcdatavalue(&f, pcdataInlTreeIndex, pc); err != nil {
			return nil, err
		}
	}
	var frames []Frame
	cur := pc
	for {
		file, line, err := t.funcline(&f, cur)
		if err != nil {
			return nil, err
		}
		if index < 0 {
			frames = append(frames, Frame{
				Function:  funcNameForPrint(t.funcName(f.nameOff)),
				File:      file,
				Line:      line,
				PC:        cur,
				StartLine: int(f.startLine),
			})
			return frames, nil
		}
		if len(frames) >= maxInlineDepth {
			return nil, fmt.Errorf("%w: inline chain too deep at %#x", ErrCorrupt, pc)
		}
		ic, err := t.inlEntry(tree, index)
		if err != nil {
			return nil, err
		}
		frames = append(frames, Frame{
			Function:  funcNameForPrint(t.funcName(ic.nameOff)),
			File:      file,
			Line:      line,
			PC:        cur,
			Inlined:   true,
			StartLine: int(ic.startLine),
		})
		cur = f.entry + uint64(int64(ic.parentPc))
		if index, err = t.pcdatavalue(&f, pcdataInlTreeIndex, cur); err != nil {
			return nil, err
		}
	}
}

// FramesForReturn returns Frames(ret-1): the convention for return
// addresses captured from a stack, which point after the call instruction.
func (t *Table) FramesForReturn(ret uint64) ([]Frame, error) {
	if ret == 0 {
		return nil, fmt.Errorf("%w: %#x", ErrNoFunc, ret)
	}
	return t.Frames(ret - 1)
}

// funcNameForPrint mirrors runtime.funcNameForPrint: the shape arguments of
// generic instantiations are replaced by "...".
func funcNameForPrint(name string) string {
	i := -1
	for k := 0; k < len(name); k++ {
		if name[k] == '[' {
			i = k
			break
		}
	}
	if i < 0 {
		return name
	}
	j := len(name) - 1
	for j > i && name[j] != ']' {
		j--
	}
	if j <= i {
		return name
	}
	return name[:i] + "[...]" + name[j+1:]
}
