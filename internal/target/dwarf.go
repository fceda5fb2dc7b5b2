package target

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"strings"
)

// Go-specific DWARF attributes emitted by cmd/link.
const (
	attrGoKind        dwarf.Attr = 0x2900 // DW_AT_go_kind: reflect.Kind of the type
	attrGoRuntimeType dwarf.Attr = 0x2904 // DW_AT_go_runtime_type: type descriptor, relative to runtime.types
)

// Go type kinds (internal/abi.Kind) as found in DW_AT_go_kind.
const (
	kindBool          = 1
	kindUintptr       = 12 // kinds 2..12 are the integer types
	kindFloat32       = 13
	kindComplex128    = 16
	kindArray         = 17
	kindChan          = 18
	kindFunc          = 19
	kindInterface     = 20
	kindMap           = 21
	kindPointer       = 22
	kindSlice         = 23
	kindString        = 24
	kindStruct        = 25
	kindUnsafePointer = 26
)

// intArgRegs is the number of integer argument registers of Go's register
// ABI: on amd64 RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11; on arm64 R0-R15.
func (b *Binary) intArgRegs() int {
	if b.Arch == "arm64" {
		return 16
	}
	return 9
}

// dwarfIndex maps names to DWARF entries.
type dwarfIndex struct {
	d        *dwarf.Data
	types    map[string]typeEntry
	subsByPC map[uint64]dwarf.Offset
	subsName map[string]dwarf.Offset
}

type typeEntry struct {
	off      dwarf.Offset
	rtype    uint64 // DW_AT_go_runtime_type value
	hasRtype bool
}

// maxDWARFDepth bounds the end-of-children entries met in a row: Go's
// DWARF nests a few levels deep.
const maxDWARFDepth = 1024

// indexDWARF walks all entries once, recording named types and subprograms.
func indexDWARF(d *dwarf.Data) (*dwarfIndex, error) {
	ix := &dwarfIndex{
		d:        d,
		types:    make(map[string]typeEntry),
		subsByPC: make(map[uint64]dwarf.Offset),
		subsName: make(map[string]dwarf.Offset),
	}
	r := d.Reader()
	// Entries lie in order within a section: offsets go back only where
	// another section's units start (.debug_types, or the type units of
	// DWARF 5). debug/dwarf can be led round in a circle by a malformed
	// unit (FuzzDWARF found one): a walk that keeps going back, or that
	// meets end-of-children entries (tag 0, offset 0) without end, is
	// ended.
	last, back, nulls := dwarf.Offset(0), 0, 0
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("walk entries: %w", err)
		}
		if e == nil {
			return ix, nil
		}
		if e.Tag == 0 {
			if nulls++; nulls > maxDWARFDepth {
				return nil, fmt.Errorf("walk entries: %w: %d end-of-children entries in a row after %#x", ErrNoLayout, nulls, last)
			}
			continue
		}
		nulls = 0
		if e.Offset <= last {
			if back++; back > 64 {
				return nil, fmt.Errorf("walk entries: %w: entries go round (at %#x after %#x)", ErrNoLayout, e.Offset, last)
			}
		}
		last = e.Offset
		name, _ := e.Val(dwarf.AttrName).(string)
		switch e.Tag {
		case dwarf.TagSubprogram:
			if pc, ok := e.Val(dwarf.AttrLowpc).(uint64); ok {
				ix.subsByPC[pc] = e.Offset
			}
			if name != "" {
				if _, dup := ix.subsName[name]; !dup || e.Val(dwarf.AttrLowpc) != nil {
					ix.subsName[name] = e.Offset
				}
			}
			if e.Children {
				r.SkipChildren()
			}
		case dwarf.TagBaseType, dwarf.TagStructType, dwarf.TagPointerType, dwarf.TagTypedef,
			dwarf.TagArrayType, dwarf.TagSubroutineType, dwarf.TagUnspecifiedType:
			if name == "" {
				continue
			}
			te := typeEntry{off: e.Offset}
			te.rtype, te.hasRtype = e.Val(attrGoRuntimeType).(uint64)
			if old, dup := ix.types[name]; !dup || !old.hasRtype && te.hasRtype {
				ix.types[name] = te
			}
		}
	}
}

// TypeAddr returns the link-time virtual address of the runtime type
// descriptor of the named type, i.e. what the type word of an interface
// holding a value of that type contains (plus the load bias for PIE).
// Names are spelled as in Go's DWARF: "context.valueCtx", "*context.valueCtx",
// "string", "main.traceKey".
//
// The DWARF attribute DW_AT_go_runtime_type holds the descriptor's offset
// from the runtime.types symbol. When the symbol table is missing, the start
// of the section holding the type data is used instead (.data.rel.ro if
// present, as in PIE binaries, else .rodata), which is where Go 1.26 puts
// runtime.types. Without DWARF the descriptor is found by its name (see
// typeAddrByName).
func (b *Binary) TypeAddr(name string) (uint64, error) {
	return b.typeAddr(name, nil)
}

// TypeAddrs is TypeAddr for each of names, with the type data scanned
// twice for all of them rather than twice for each (a large binary's is
// tens of megabytes: about 2 ms a name on a small machine).
func (b *Binary) TypeAddrs(names []string) ([]uint64, []error) {
	var ix *nameIndex
	if base, err := b.typesBase(); err == nil {
		if sec := b.sectionAt(base); sec != nil && sec.Size <= maxTypesSection {
			if data, err := b.section(sec); err == nil {
				ix = indexNames(data, base-sec.Addr, names)
			}
		}
	}
	addrs, errs := make([]uint64, len(names)), make([]error, len(names))
	for i, n := range names {
		addrs[i], errs[i] = b.typeAddr(n, ix)
	}
	return addrs, errs
}

// typeAddr is TypeAddr, with the scans of the type data answered by ix
// where it can (nil: never).
func (b *Binary) typeAddr(name string, ix *nameIndex) (uint64, error) {
	// By name first: it needs no DWARF (seconds to read on a large
	// binary) and answers only when exactly one descriptor carries the
	// name and package path. DWARF settles what it cannot.
	addr, nameErr := b.typeAddrByName(name, ix)
	if nameErr == nil {
		return addr, nil
	}
	if errors.Is(nameErr, ErrNoSymbol) && b.types != 0 {
		// No descriptor carries the name (the search started at the
		// runtime.types symbol, not a guess): DWARF has none either.
		return 0, nameErr
	}
	dw, err := b.dwarfData()
	if errors.Is(err, ErrNoLayout) {
		return 0, nameErr
	}
	if err != nil {
		return 0, fmt.Errorf("type address of %s: %w", name, err)
	}
	te, ok := dw.types[name]
	if !ok || !te.hasRtype {
		// DWARF describes the types the code's variables use; a type
		// only ever converted to an interface (context.todoCtx) can be
		// missing from it while its descriptor is there.
		return 0, nameErr
	}
	base, err := b.typesBase()
	if err != nil {
		return 0, fmt.Errorf("type address of %s: %w", name, err)
	}
	if te.rtype >= base {
		// Older linkers stored the absolute address.
		return te.rtype, nil
	}
	return base + te.rtype, nil
}

// typesBase returns the address of runtime.types (moduledata.types).
func (b *Binary) typesBase() (uint64, error) {
	if b.types != 0 {
		return b.types, nil
	}
	return b.typesBaseFromSections()
}

// typesBaseFromSections guesses runtime.types without a symbol table: the Go
// 1.26 linker puts the type data first in .data.rel.ro when that section
// exists (PIE) and first in .rodata otherwise.
func (b *Binary) typesBaseFromSections() (uint64, error) {
	// Go 1.27 gives the type data a section of its own.
	for _, name := range []string{".go.type", ".data.rel.ro.go.type", ".data.rel.ro", ".rodata"} {
		if s := b.elf.Section(name); s != nil && s.Addr != 0 {
			return s.Addr, nil
		}
	}
	return 0, fmt.Errorf("locate runtime.types in %s: %w (no symbol, no .rodata)", b.Path, ErrNoLayout)
}

// FieldOffset returns the byte offset of a field of the named struct type.
// fieldPath may be dotted to go through nested or embedded structs, e.g.
// FieldOffset("runtime.g", "sched.bp"). Without DWARF it returns ErrNoLayout;
// an unknown type or field gives ErrNoSymbol.
func (b *Binary) FieldOffset(typeName, fieldPath string) (uint64, error) {
	ix, err := b.dwarfData()
	if err != nil {
		return 0, fmt.Errorf("offset of %s.%s: %w", typeName, fieldPath, err)
	}
	b.dwarfMu.Lock()
	defer b.dwarfMu.Unlock()
	off, err := ix.fieldOffset(typeName, fieldPath)
	if err != nil {
		return 0, fmt.Errorf("offset of %s.%s in %s: %w", typeName, fieldPath, b.Path, err)
	}
	return off, nil
}

// fieldOffset is FieldOffset on the index. debug/dwarf trusts the file
// further than ctxwatch does (a malformed type graph has made it panic):
// a panic while reading types is an error about the file.
func (ix *dwarfIndex) fieldOffset(typeName, fieldPath string) (off uint64, err error) {
	te, ok := ix.types[typeName]
	if !ok {
		return 0, fmt.Errorf("%w (no such type)", ErrNoSymbol)
	}
	defer func() {
		if r := recover(); r != nil {
			off, err = 0, fmt.Errorf("%w: malformed DWARF type: %v", ErrNoLayout, r)
		}
	}()
	if err := sizeCycle(ix.d, te.off); err != nil {
		return 0, err
	}
	t, err := ix.d.Type(te.off)
	if err != nil {
		return 0, fmt.Errorf("read DWARF type: %w", err)
	}
	for _, part := range strings.Split(fieldPath, ".") {
		st, ok := unwrapTypedef(t).(*dwarf.StructType)
		if !ok {
			return 0, fmt.Errorf("before %s: %s is not a struct: %w", part, typeLabel(t), ErrNoSymbol)
		}
		var found *dwarf.StructField
		for _, f := range st.Field {
			if f.Name == part {
				found = f
				break
			}
		}
		if found == nil {
			return 0, fmt.Errorf("%s has no field %s: %w", st.StructName, part, ErrNoSymbol)
		}
		off += uint64(found.ByteOffset)
		t = found.Type
	}
	return off, nil
}

// sizeCycle refuses a type graph that debug/dwarf's Type would recurse
// round for ever (a stack overflow, which no recover catches; FuzzDWARF
// found it): a cycle through typedefs, arrays and qualifiers only, whose
// sizes are their element's. A struct or a pointer has a size of its own
// and ends the recursion, so a type that refers to itself through them
// (a list node) is fine. Every type the graph reaches from off is read, as
// Type does, up to maxTypeWalk entries.
func sizeCycle(d *dwarf.Data, off dwarf.Offset) error {
	const maxTypeWalk = 1 << 16
	r := d.Reader()
	// entry reads the entry at off and the type references of its children.
	entry := func(off dwarf.Offset) (*dwarf.Entry, []dwarf.Offset, error) {
		r.Seek(off)
		e, err := r.Next()
		if err != nil || e == nil {
			return nil, nil, fmt.Errorf("%w: no DWARF entry at %#x", ErrNoLayout, off)
		}
		var refs []dwarf.Offset
		if t, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
			refs = append(refs, t)
		}
		for depth := 0; e.Children; {
			c, err := r.Next()
			if err != nil || c == nil {
				break
			}
			if c.Tag == 0 {
				if depth == 0 {
					break
				}
				depth--
				continue
			}
			if c.Children {
				depth++
			}
			if t, ok := c.Val(dwarf.AttrType).(dwarf.Offset); ok {
				refs = append(refs, t)
			}
		}
		return e, refs, nil
	}
	transparent := func(tag dwarf.Tag) bool {
		switch tag {
		case dwarf.TagTypedef, dwarf.TagArrayType, dwarf.TagConstType, dwarf.TagVolatileType, dwarf.TagRestrictType:
			return true
		}
		return false
	}
	type node struct {
		tag  dwarf.Tag
		refs []dwarf.Offset
	}
	nodes := map[dwarf.Offset]node{}
	todo := []dwarf.Offset{off}
	for len(todo) > 0 {
		o := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if _, seen := nodes[o]; seen {
			continue
		}
		if len(nodes) >= maxTypeWalk {
			return fmt.Errorf("%w: type at %#x reaches over %d DWARF entries", ErrNoLayout, off, maxTypeWalk)
		}
		e, refs, err := entry(o)
		if err != nil {
			return err
		}
		nodes[o] = node{e.Tag, refs}
		todo = append(todo, refs...)
	}
	for o, n := range nodes {
		// Follow the element chain of a size-transparent type.
		for cur, steps := n, 0; transparent(cur.tag) && len(cur.refs) > 0; steps++ {
			if steps > len(nodes) {
				return fmt.Errorf("%w: DWARF type at %#x is its own element", ErrNoLayout, o)
			}
			cur = nodes[cur.refs[0]]
		}
	}
	return nil
}

// typeLabel names t for a message. A dwarf.Type's String walks the type
// graph, which a malformed file can make a cycle (a stack overflow, not a
// panic: FuzzDWARF found it).
func typeLabel(t dwarf.Type) string {
	if n := t.Common().Name; n != "" {
		return n
	}
	return fmt.Sprintf("an unnamed %T", t)
}

func unwrapTypedef(t dwarf.Type) dwarf.Type {
	for i := 0; i < 16; i++ {
		td, ok := t.(*dwarf.TypedefType)
		if !ok {
			break
		}
		t = td.Type
	}
	return t
}

// ContextArg returns the index of the first of the two integer registers
// (0 = RAX, then RBX, RCX, RDI, RSI, R8, R9, R10, R11) holding fn's first
// context.Context parameter under Go's amd64 register ABI. The receiver of a
// method counts as the first parameter. It is an error if a parameter before
// the context is one it cannot place with certainty (a non-empty struct or
// array, a float or complex) or if the context does not fit in registers.
func (b *Binary) ContextArg(fn Func) (int, error) {
	ix, err := b.dwarfData()
	if err != nil {
		return 0, fmt.Errorf("context argument of %s: %w", fn.Name, err)
	}
	b.dwarfMu.Lock()
	defer b.dwarfMu.Unlock()
	params, err := ix.params(fn)
	if err != nil {
		return 0, fmt.Errorf("context argument of %s in %s: %w", fn.Name, b.Path, err)
	}
	reg := 0
	for _, p := range params {
		kind, tname, size, err := ix.goKind(p.typ)
		if err != nil {
			return 0, fmt.Errorf("context argument of %s: parameter %s: %w", fn.Name, p.name, err)
		}
		if kind == kindInterface && tname == "context.Context" {
			if reg+2 > b.intArgRegs() {
				return 0, fmt.Errorf("context argument of %s: parameter %s is passed on the stack", fn.Name, p.name)
			}
			return reg, nil
		}
		n, err := intRegs(kind, size)
		if err != nil {
			return 0, fmt.Errorf("context argument of %s: cannot place parameter %s (%s) before the context: %w", fn.Name, p.name, tname, err)
		}
		if reg+n > b.intArgRegs() {
			return 0, fmt.Errorf("context argument of %s: parameter %s (%s) spills to the stack; later registers are uncertain", fn.Name, p.name, tname)
		}
		reg += n
	}
	return 0, fmt.Errorf("context argument of %s: %w (no context.Context parameter)", fn.Name, ErrNoSymbol)
}

// intRegs returns how many integer registers a value of the given kind and
// size takes, or an error if that is not certain.
func intRegs(kind int, size int64) (int, error) {
	switch {
	case kind >= kindBool && kind <= kindUintptr,
		kind == kindChan, kind == kindFunc, kind == kindMap, kind == kindPointer, kind == kindUnsafePointer:
		return 1, nil
	case kind == kindInterface, kind == kindString:
		return 2, nil
	case kind == kindSlice:
		return 3, nil
	case kind >= kindFloat32 && kind <= kindComplex128:
		return 0, errors.New("floating-point values use the X registers")
	case (kind == kindStruct || kind == kindArray) && size == 0:
		return 0, nil
	case kind == kindStruct, kind == kindArray:
		return 0, errors.New("struct and array register assignment is not supported")
	}
	return 0, fmt.Errorf("unknown type kind %d", kind)
}

type param struct {
	name string
	typ  dwarf.Offset
}

// params returns fn's input parameters in order, receiver first.
func (ix *dwarfIndex) params(fn Func) ([]param, error) {
	off, ok := ix.subsByPC[fn.Entry]
	if !ok {
		if off, ok = ix.subsName[fn.Name]; !ok {
			return nil, fmt.Errorf("%w (no DWARF subprogram)", ErrNoSymbol)
		}
	}
	r := ix.d.Reader()
	r.Seek(off)
	e, err := r.Next()
	if err != nil || e == nil {
		return nil, fmt.Errorf("read subprogram: %v", err)
	}
	// A concrete out-of-line copy of an inlined function refers to the
	// abstract subprogram, which lists the parameters with names and types.
	if origin, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
		r.Seek(origin)
		if e, err = r.Next(); err != nil || e == nil {
			return nil, fmt.Errorf("read abstract subprogram: %v", err)
		}
	}
	var ps []param
	if !e.Children {
		return nil, nil
	}
	for {
		c, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read parameters: %w", err)
		}
		if c == nil || c.Tag == 0 {
			return ps, nil
		}
		if c.Tag == dwarf.TagFormalParameter {
			if out, _ := c.Val(dwarf.AttrVarParam).(bool); !out {
				name, _ := c.Val(dwarf.AttrName).(string)
				typ, ok := c.Val(dwarf.AttrType).(dwarf.Offset)
				if !ok {
					return nil, fmt.Errorf("parameter %s has no type", name)
				}
				ps = append(ps, param{name, typ})
			}
		}
		if c.Children {
			r.SkipChildren()
		}
	}
}

// goKind follows typedefs from off to the entry carrying DW_AT_go_kind and
// returns the kind, the type's name and its byte size.
func (ix *dwarfIndex) goKind(off dwarf.Offset) (kind int, name string, size int64, err error) {
	r := ix.d.Reader()
	for i := 0; i < 16; i++ {
		r.Seek(off)
		e, err := r.Next()
		if err != nil || e == nil {
			return 0, "", 0, fmt.Errorf("read type at %#x: %v", off, err)
		}
		name, _ = e.Val(dwarf.AttrName).(string)
		if k, ok := e.Val(attrGoKind).(int64); ok {
			size, _ = e.Val(dwarf.AttrByteSize).(int64)
			return int(k), name, size, nil
		}
		next, ok := e.Val(dwarf.AttrType).(dwarf.Offset)
		if e.Tag != dwarf.TagTypedef || !ok {
			return 0, name, 0, fmt.Errorf("type %q has no Go kind", name)
		}
		off = next
	}
	return 0, name, 0, fmt.Errorf("typedef chain too long at %#x", off)
}

// ContextWrappers returns the link-time addresses of the type descriptors
// of the struct types, and pointers to them, that the binary converts to
// context.Context and whose first field is an embedded context.Context
// (os/signal's signalCtx, a user's wrapper), and why there are none when
// they cannot be read. They come from the static itabs, not from DWARF,
// which takes seconds to read in a large binary.
func (b *Binary) ContextWrappers() ([]uint64, error) { return b.itabWrappers() }
