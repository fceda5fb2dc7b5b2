package target

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"strings"
)

// Fields of the runtime's type descriptor (internal/abi.Type, runtime._type
// before Go 1.21), unchanged on 64-bit from Go 1.17 to 1.26:
// Size_ 0, PtrBytes 8, Hash 16, TFlag 20, Align_ 21, FieldAlign_ 22,
// Kind_ 23, Equal 24, GCData 32, Str 40, PtrToThis 44.
const (
	abiTypeTFlag = 20
	abiTypeKind  = 23
	abiTypeStr   = 40

	tflagExtraStar = 1 << 1
	kindMask       = 0x1f
	kindPtr        = 22

	maxTypesSection = 256 << 20
)

// typeAddrByName finds the runtime type descriptor of a type from its name
// alone, for binaries without DWARF. A type's Str field is the offset, from
// runtime.types, of its name data: a flag byte, the varint length, the
// bytes. The linker stores the name of T as "*T" with TFlagExtraStar set,
// so that *T (kind pointer, no extra star) shares it; both are told apart
// by that flag. Candidates are checked for alignment and a sane kind, and
// the name must be unique: an ambiguous answer is an error, never a guess.
func (b *Binary) typeAddrByName(name string, ix *nameIndex) (uint64, error) {
	base, err := b.typesBase()
	if err != nil {
		return 0, err
	}
	sec := b.sectionAt(base)
	if sec == nil {
		return 0, fmt.Errorf("type %s: no section holds runtime.types at %#x: %w", name, base, ErrNoLayout)
	}
	if sec.Size > maxTypesSection {
		return 0, fmt.Errorf("type %s: section %s of %d bytes is over the limit", name, sec.Name, sec.Size)
	}
	data, err := b.section(sec)
	if err != nil {
		return 0, fmt.Errorf("type %s: read %s: %w", name, sec.Name, err)
	}
	start := base - sec.Addr // offset of runtime.types in data
	wantPtr := strings.HasPrefix(name, "*")
	if wantPtr {
		// *T is the PtrToThis of T, when T records it: exact even when
		// two packages of the same name both have a T.
		if elem, err := b.typeAddrByName(name[1:], ix); err == nil {
			if ptr := b.ptrToThis(sec, data, start, elem-sec.Addr); ptr != 0 {
				return ptr, nil
			}
		}
	}
	// The runtime names a type by its package's name, not its path:
	// go.opentelemetry.io/otel/trace.nonRecordingSpan is stored as
	// trace.nonRecordingSpan; the path is checked below.
	pkgPath := PackagePath(strings.TrimPrefix(name, "*"))
	stored := storedName(name)
	nameAts, ok := ix.names(stored)
	if !ok {
		nameAts = nameData(data, stored)
	}
	var found []uint64
	for _, nameAt := range nameAts {
		if nameAt < start || nameAt-start > 1<<31 {
			continue
		}
		nameOff := uint32(nameAt - start)
		var typs []uint64
		if cands, ok := ix.naming(nameOff); ok {
			typs = filterNaming(data, cands, wantPtr)
		} else {
			typs = b.typesNaming(data, start, nameOff, wantPtr)
		}
		for _, typ := range typs {
			if !strings.Contains(pkgPath, "/") || typePkgPath(data, start, typ) == pkgPath {
				found = append(found, typ)
			}
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("type %s not in %s: %w", name, b.Path, ErrNoSymbol)
	case 1:
		return sec.Addr + found[0], nil
	}
	return 0, fmt.Errorf("type %s: %d descriptors in %s carry that name", name, len(found), b.Path)
}

// storedName is how the runtime stores the name of the named type (or of
// its element, for a pointer): "*" and the name, with the package's name
// and not its path.
func storedName(name string) string {
	name = strings.TrimPrefix(name, "*")
	if i := strings.LastIndexByte(PackagePath(name), '/'); i >= 0 {
		name = name[i+1:]
	}
	return "*" + name
}

// nameData returns the offsets in data of name data holding stored: the
// flag byte before its varint length.
func nameData(data []byte, stored string) []uint64 {
	enc := binary.AppendUvarint(nil, uint64(len(stored)))
	enc = append(enc, stored...)
	var out []uint64
	for i := 0; ; {
		j := bytes.Index(data[i:], enc)
		if j < 0 {
			return out
		}
		if i+j > 0 {
			out = append(out, uint64(i+j)-1)
		}
		i += j + 1
	}
}

// nameIndex is what typeAddrByName would scan the type data for, found
// for a batch of names in two passes over it instead of two per name
// (TypeAddrs): the name data of each stored name, and the descriptors
// whose Str is one of theirs (before the checks of typesNaming).
type nameIndex struct {
	nameAts map[string][]uint64
	byStr   map[uint32][]uint64
}

// names returns the name data of stored, if the index knows.
func (ix *nameIndex) names(stored string) ([]uint64, bool) {
	if ix == nil {
		return nil, false
	}
	at, ok := ix.nameAts[stored]
	return at, ok
}

// naming returns the descriptors whose Str is nameOff, if the index knows.
func (ix *nameIndex) naming(nameOff uint32) ([]uint64, bool) {
	if ix == nil {
		return nil, false
	}
	typs, ok := ix.byStr[nameOff]
	return typs, ok
}

// indexNames makes the nameIndex of names, for the type data data whose
// runtime.types is at offset start. A nil index (none of the names fits
// the one-byte length the first pass reads) is valid: every lookup scans.
func indexNames(data []byte, start uint64, names []string) *nameIndex {
	want := map[string]bool{}
	for _, n := range names {
		for _, m := range []string{n, strings.TrimPrefix(n, "*")} {
			if s := storedName(m); len(s) < 0x80 {
				want[s] = true
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	ix := &nameIndex{nameAts: map[string][]uint64{}, byStr: map[uint32][]uint64{}}
	for s := range want {
		ix.nameAts[s] = nil // found nowhere, unless below
	}
	// Pass 1: every '*' that follows a one-byte length and a flag byte,
	// and starts a wanted name of that length.
	for i := 2; i < len(data); {
		j := bytes.IndexByte(data[i:], '*')
		if j < 0 {
			break
		}
		at := i + j
		i = at + 1
		n := int(data[at-1])
		if n >= 0x80 || at+n > len(data) {
			continue
		}
		if s := data[at : at+n]; want[string(s)] {
			ix.nameAts[string(s)] = append(ix.nameAts[string(s)], uint64(at-2))
		}
	}
	// Pass 2: every descriptor position (8-aligned from runtime.types)
	// whose Str is one of theirs; a bitmap of the offsets' low 16 bits
	// spares the map almost every position.
	var bits [1 << 16 / 64]uint64
	for _, ats := range ix.nameAts {
		for _, at := range ats {
			if at >= start && at-start <= 1<<31 {
				off := uint32(at - start)
				ix.byStr[off] = ix.byStr[off][:0]
				bits[uint16(off)/64] |= 1 << (uint16(off) % 64)
			}
		}
	}
	for typ := start; typ+abiTypeStr+4 <= uint64(len(data)); typ += 8 {
		off := binary.LittleEndian.Uint32(data[typ+abiTypeStr:])
		if bits[uint16(off)/64]&(1<<(uint16(off)%64)) == 0 {
			continue
		}
		if l, ok := ix.byStr[off]; ok {
			ix.byStr[off] = append(l, typ)
		}
	}
	return ix
}

// filterNaming keeps, of the descriptor offsets typs, those typesNaming
// would return.
func filterNaming(data []byte, typs []uint64, wantPtr bool) []uint64 {
	var out []uint64
	for _, typ := range typs {
		if typeNaming(data, typ, wantPtr) {
			out = append(out, typ)
		}
	}
	return out
}

// typeNaming says whether the descriptor at typ has a sane kind and an
// extra-star flag that matches the wanted type.
func typeNaming(data []byte, typ uint64, wantPtr bool) bool {
	tflag, kind := data[typ+abiTypeTFlag], data[typ+abiTypeKind]&kindMask
	if kind == 0 || kind > 26 {
		return false
	}
	extraStar := tflag&tflagExtraStar != 0
	return !(wantPtr == extraStar || (wantPtr && kind != kindPtr))
}

// typesNaming returns the offsets in data of type descriptors whose Str is
// nameOff and whose extra-star flag matches the wanted type.
func (b *Binary) typesNaming(data []byte, start uint64, nameOff uint32, wantPtr bool) []uint64 {
	var pat [4]byte
	binary.LittleEndian.PutUint32(pat[:], nameOff)
	var out []uint64
	for i := 0; ; {
		j := bytes.Index(data[i:], pat[:])
		if j < 0 {
			return out
		}
		at := i + j
		i = at + 1
		typ := at - abiTypeStr
		if typ < int(start) || (typ-int(start))%8 != 0 || !typeNaming(data, uint64(typ), wantPtr) {
			continue
		}
		out = append(out, uint64(typ))
	}
}

// sectionAt returns the allocated section holding addr.
func (b *Binary) sectionAt(addr uint64) *elf.Section {
	for _, s := range b.elf.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Type != elf.SHT_NOBITS && addr >= s.Addr && addr-s.Addr < s.Size {
			return s
		}
	}
	return nil
}

// Sizes of the kind-specific type descriptors that an uncommon type
// follows (internal/abi, 64-bit, Go 1.17 to 1.26), for the kinds a trace
// key, span or context type can have.
func kindSize(kind byte) int {
	switch {
	case kind >= 1 && kind <= 16, kind == 24, kind == 26: // scalars, string, unsafe.Pointer
		return 48
	case kind == kindPtr, kind == 23, kind == 19: // pointer, slice, func
		return 56
	case kind == 17: // array
		return 72
	case kind == 25, kind == 20: // struct, interface
		return 80
	}
	return 0
}

// typePkgPath returns the package path recorded for the type descriptor at
// typ (for a pointer, of its element), or "" when none is recorded.
func typePkgPath(data []byte, start uint64, typ uint64) string {
	read32 := func(at uint64) (uint32, bool) {
		if at+4 > uint64(len(data)) {
			return 0, false
		}
		return binary.LittleEndian.Uint32(data[at:]), true
	}
	kind := data[typ+abiTypeKind] & kindMask
	if kind == kindPtr {
		// PtrType.Elem is an absolute pointer, not known in a PIE file;
		// the element is found through the shared name instead.
		return ""
	}
	const tflagUncommon = 1
	if data[typ+abiTypeTFlag]&tflagUncommon == 0 || kindSize(kind) == 0 {
		return ""
	}
	off, ok := read32(typ + uint64(kindSize(kind))) // UncommonType.PkgPath
	if !ok || off == 0 {
		return ""
	}
	at := start + uint64(off) + 1 // skip the flag byte
	if at >= uint64(len(data)) {
		return ""
	}
	n, w := binary.Uvarint(data[at:])
	// Not at+w+n: n comes from the file and the sum may wrap.
	if w <= 0 || n > uint64(len(data))-at-uint64(w) {
		return ""
	}
	return string(data[at+uint64(w) : at+uint64(w)+n])
}

// ptrToThis returns the address of *T recorded in T's descriptor (its
// PtrToThis type offset), or 0.
func (b *Binary) ptrToThis(sec *elf.Section, data []byte, start, typ uint64) uint64 {
	const abiTypePtrToThis = 44
	if typ+abiTypePtrToThis+4 > uint64(len(data)) {
		return 0
	}
	off := binary.LittleEndian.Uint32(data[typ+abiTypePtrToThis:])
	if off == 0 || start+uint64(off) >= uint64(len(data)) {
		return 0
	}
	return sec.Addr + start + uint64(off)
}

// TypeKind returns the kind (internal/abi.Kind) and size of the type
// descriptor at link-time address addr, as TypeAddr returned it.
func (b *Binary) TypeKind(addr uint64) (kind byte, size uint64, err error) {
	sec := b.sectionAt(addr)
	if sec == nil {
		return 0, 0, fmt.Errorf("type descriptor at %#x: in no section of %s", addr, b.Path)
	}
	data, err := b.section(sec)
	if err != nil {
		return 0, 0, fmt.Errorf("type descriptor at %#x: %w", addr, err)
	}
	at := addr - sec.Addr
	if at+abiTypeKind+1 > uint64(len(data)) {
		return 0, 0, fmt.Errorf("type descriptor at %#x: past the end of %s", addr, sec.Name)
	}
	return data[at+abiTypeKind] & kindMask, binary.LittleEndian.Uint64(data[at:]), nil
}
