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
func (b *Binary) typeAddrByName(name string) (uint64, error) {
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
		if elem, err := b.typeAddrByName(name[1:]); err == nil {
			if ptr := b.ptrToThis(sec, data, start, elem-sec.Addr); ptr != 0 {
				return ptr, nil
			}
		}
	}
	// The runtime names a type by its package's name, not its path:
	// go.opentelemetry.io/otel/trace.nonRecordingSpan is stored as
	// trace.nonRecordingSpan; the path is checked below.
	pkgPath := PackagePath(strings.TrimPrefix(name, "*"))
	stored := "*" + strings.TrimPrefix(name, "*")
	if i := strings.LastIndexByte(pkgPath, '/'); i >= 0 {
		stored = "*" + strings.TrimPrefix(name, "*")[i+1:]
	}
	enc := binary.AppendUvarint(nil, uint64(len(stored)))
	enc = append(enc, stored...)
	var found []uint64
	for i := 0; ; {
		j := bytes.Index(data[i:], enc)
		if j < 0 {
			break
		}
		nameAt := uint64(i+j) - 1 // the flag byte before the length
		i += j + 1
		if nameAt < start || nameAt-start > 1<<31 {
			continue
		}
		for _, typ := range b.typesNaming(data, start, uint32(nameAt-start), wantPtr) {
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
		if typ < int(start) || (typ-int(start))%8 != 0 {
			continue
		}
		tflag, kind := data[typ+abiTypeTFlag], data[typ+abiTypeKind]&kindMask
		if kind == 0 || kind > 26 {
			continue
		}
		extraStar := tflag&tflagExtraStar != 0
		if wantPtr == extraStar || (wantPtr && kind != kindPtr) {
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
