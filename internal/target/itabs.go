package target

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Layouts read by contextItabs and itabWrappers (internal/abi, 64-bit, Go 1.17 to 1.27;
// runtime.itab and runtime._type before Go 1.21 have the same layout):
//
//	itab:        Inter *InterfaceType 0, Type *Type 8
//	PtrType:     Type 0..48, Elem *Type 48
//	StructType:  Type 0..48, PkgPath Name 48, Fields []StructField 56 (len 64)
//	StructField: Name Name 0, Typ *Type 8, Offset uintptr 16 (24 bytes)
//
// A field is embedded when its name's flag byte has bit 3 (Go 1.19 on);
// before, when the low bit of its Offset (offsetAnon) is set.
const (
	itabType          = 8
	ptrTypeElem       = 48
	structTypeFields  = 56
	structFieldTyp    = 8
	structFieldOffset = 16
	nameFlagEmbedded  = 1 << 3
	maxItabs          = 1 << 20 // entries of .itablink
)

// contextItab is a static itab of context.Context: the linker made it for
// a conversion of typ to the interface it saw at build time.
type contextItab struct{ itab, typ uint64 }

// contextItabs returns the static itabs of context.Context and the
// interface's type descriptor, read once.
func (b *Binary) contextItabs() (uint64, []contextItab, error) {
	b.itabsOnce.Do(func() { b.ctxIface, b.ctxItabs, b.itabsErr = b.readContextItabs() })
	return b.ctxIface, b.ctxItabs, b.itabsErr
}

// readContextItabs reads the static itabs of context.Context from the
// .itablink section (the internal linker's; in a PIE, relocated data). The
// external linker keeps the section only when the output is not PIE.
func (b *Binary) readContextItabs() (iface uint64, out []contextItab, err error) {
	iface, err = b.TypeAddr("context.Context")
	if err != nil {
		return 0, nil, err
	}
	sec := b.elf.Section(".itablink")
	if sec == nil {
		sec = b.elf.Section(".data.rel.ro.itablink")
	}
	if sec == nil {
		return 0, nil, fmt.Errorf("no .itablink section in %s (a PIE linked externally): %w", b.Path, ErrNoLayout)
	}
	if sec.Size%8 != 0 || sec.Size/8 > maxItabs {
		return 0, nil, fmt.Errorf(".itablink of %d bytes: %w", sec.Size, ErrCorrupt)
	}
	links, err := b.section(sec)
	if err != nil {
		return 0, nil, err
	}
	rd := b.reader()
	for i := uint64(0); i < sec.Size; i += 8 {
		itab, err := rd.word(sec.Addr+i, binary.LittleEndian.Uint64(links[i:]))
		if err != nil {
			return 0, nil, fmt.Errorf("itab %d: %w", i/8, err)
		}
		if inter, err := rd.word(itab, 0); err != nil || inter != iface {
			continue
		}
		typ, err := rd.word(itab+itabType, 0)
		if err != nil || typ == 0 {
			continue
		}
		out = append(out, contextItab{itab: itab, typ: typ})
	}
	return iface, out, nil
}

// ContextItabs returns, for each type the binary converts to
// context.Context at build time, the link-time address of that static
// itab, by the type descriptor's address. An interface value whose itab
// is one of them has that dynamic type without a read of the itab. The
// runtime makes other itabs only for conversions the linker did not see
// (from another interface type, when no static one exists).
func (b *Binary) ContextItabs() (map[uint64]uint64, error) {
	_, itabs, err := b.contextItabs()
	if err != nil {
		return nil, fmt.Errorf("find the itabs of context.Context: %w", err)
	}
	out := make(map[uint64]uint64, len(itabs))
	for _, it := range itabs {
		out[it.typ] = it.itab
	}
	return out, nil
}

// itabWrappers returns the link-time addresses of the type descriptors that
// the binary converts to context.Context somewhere (a static itab: the
// linker lists them in .itablink) and whose value is, or points to, a
// struct whose first field is an embedded context.Context: the wrappers
// the probes walk through. A conversion only made at run time (from
// another interface) has no static itab and is not found; DWARF finds
// those, at the cost of reading it (ContextWrappers says when).
func (b *Binary) itabWrappers() ([]uint64, error) {
	iface, itabs, err := b.contextItabs()
	if err != nil {
		return nil, fmt.Errorf("find context wrappers: %w", err)
	}
	base, err := b.typesBase()
	if err != nil {
		return nil, fmt.Errorf("find context wrappers: %w", err)
	}
	tsec := b.sectionAt(base)
	if tsec == nil {
		return nil, fmt.Errorf("find context wrappers: no section holds runtime.types at %#x: %w", base, ErrNoLayout)
	}
	types, err := b.section(tsec)
	if err != nil {
		return nil, fmt.Errorf("find context wrappers: %w", err)
	}
	// Package context's own types (valueCtx, stopCtx embed their parent
	// first too) are walked as what they are, not as wrappers.
	inContext := func(strct uint64) bool {
		return strct >= tsec.Addr && strct-tsec.Addr < tsec.Size &&
			typePkgPath(types, base-tsec.Addr, strct-tsec.Addr) == "context"
	}
	rd := b.reader()
	embedded := goVersionAtLeast(b.GoVersion, 1, 19)
	var out []uint64
	for _, it := range itabs {
		if strct, ok := rd.wrapsContext(it.typ, iface, embedded); ok && !inContext(strct) {
			out = append(out, it.typ)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// wrapsContext reports whether typ is a struct, or a pointer to one, whose
// first field is an embedded field of type iface, and returns the struct.
func (rd *memReader) wrapsContext(typ, iface uint64, embeddedInName bool) (uint64, bool) {
	kind, ok := rd.byte(typ + abiTypeKind)
	if !ok {
		return 0, false
	}
	if kind&kindMask == kindPtr {
		elem, err := rd.word(typ+ptrTypeElem, 0)
		if err != nil || elem == 0 {
			return 0, false
		}
		typ = elem
		if kind, ok = rd.byte(typ + abiTypeKind); !ok {
			return 0, false
		}
	}
	if kind&kindMask != kindStruct {
		return 0, false
	}
	fields, err := rd.word(typ+structTypeFields, 0)
	if err != nil || fields == 0 {
		return 0, false
	}
	n, err := rd.word(typ+structTypeFields+8, 0)
	if err != nil || n == 0 {
		return 0, false
	}
	if ft, err := rd.word(fields+structFieldTyp, 0); err != nil || ft != iface {
		return 0, false
	}
	if !embeddedInName {
		off, err := rd.word(fields+structFieldOffset, 0)
		return typ, err == nil && off&1 == 1
	}
	name, err := rd.word(fields, 0)
	if err != nil || name == 0 {
		return 0, false
	}
	flags, ok := rd.byte(name)
	return typ, ok && flags&nameFlagEmbedded != 0
}

// memReader reads the binary's allocated data at link-time addresses, with
// the pointers a PIE file leaves to the dynamic loader filled in from its
// R_*_RELATIVE relocations.
type memReader struct {
	b     *Binary
	relas []rela // sorted by offset; nil unless PIE
	err   error  // reading the relocations
}

type rela struct{ off, addend uint64 }

func (b *Binary) reader() *memReader {
	rd := &memReader{b: b}
	if b.PIE {
		rd.relas, rd.err = b.relativeRelocs()
	}
	return rd
}

// word returns the 8-byte word at addr. In a PIE file a pointer's bytes are
// zero and its value is the addend of a relative relocation at addr; when
// the caller already holds the bytes, have is their value.
func (rd *memReader) word(addr, have uint64) (uint64, error) {
	if rd.b.PIE {
		if rd.err != nil {
			return 0, rd.err
		}
		i := sort.Search(len(rd.relas), func(i int) bool { return rd.relas[i].off >= addr })
		if i < len(rd.relas) && rd.relas[i].off == addr {
			return rd.relas[i].addend, nil
		}
	}
	if have != 0 {
		return have, nil
	}
	sec := rd.b.sectionAt(addr)
	if sec == nil || addr+8 > sec.Addr+sec.Size {
		return 0, fmt.Errorf("word at %#x: in no section of %s", addr, rd.b.Path)
	}
	data, err := rd.b.section(sec)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(data[addr-sec.Addr:]), nil
}

func (rd *memReader) byte(addr uint64) (byte, bool) {
	sec := rd.b.sectionAt(addr)
	if sec == nil {
		return 0, false
	}
	data, err := rd.b.section(sec)
	if err != nil {
		return 0, false
	}
	return data[addr-sec.Addr], true
}

// maxRelocs bounds .rela.dyn (24 bytes an entry): a Go PIE binary has one
// relocation per pointer in its read-only data, a few million at most.
const maxRelocs = 64 << 20

// relativeRelocs returns the file's relative relocations, sorted by offset:
// in .rela (the internal linker) or .rela.dyn (the external one).
func (b *Binary) relativeRelocs() ([]rela, error) {
	var data []byte
	for _, sec := range b.elf.Sections {
		if sec.Type != elf.SHT_RELA || sec.Flags&elf.SHF_ALLOC == 0 || sec.Size == 0 {
			continue
		}
		if sec.Size%24 != 0 || uint64(len(data))/24+sec.Size/24 > maxRelocs {
			return nil, fmt.Errorf("relocations: %s of %d bytes: %w", sec.Name, sec.Size, ErrCorrupt)
		}
		d, err := b.section(sec)
		if err != nil {
			return nil, fmt.Errorf("relocations: %w", err)
		}
		data = append(data, d...)
	}
	if data == nil {
		return nil, errors.New("a PIE file without relocations")
	}
	relative := uint32(elf.R_X86_64_RELATIVE)
	if b.Arch == "arm64" {
		relative = uint32(elf.R_AARCH64_RELATIVE)
	}
	out := make([]rela, 0, len(data)/24)
	for i := 0; i+24 <= len(data); i += 24 {
		info := binary.LittleEndian.Uint64(data[i+8:])
		if elf.R_TYPE64(info) == relative {
			out = append(out, rela{binary.LittleEndian.Uint64(data[i:]), binary.LittleEndian.Uint64(data[i+16:])})
		}
	}
	slices.SortFunc(out, func(a, b rela) int {
		switch {
		case a.off < b.off:
			return -1
		case a.off > b.off:
			return 1
		}
		return 0
	})
	return out, nil
}
