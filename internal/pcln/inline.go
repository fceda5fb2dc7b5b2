package pcln

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// InlinedInto returns up to max functions (physical ones, in address order)
// whose inline trees hold a call of the function named name: where the
// compiler copied its body instead of calling it. None means name was not
// inlined anywhere, or the table cannot expand inline trees (no go:func.*).
// A function inlined everywhere has no entry of its own, so nothing can be
// probed for it; this says where its calls went.
func (t *Table) InlinedInto(name string, max int) ([]string, error) {
	want := []byte(name)
	var into []string
	for i := 0; i < t.nfunc && len(into) < max; i++ {
		entry, _ := t.ftabEntry(i)
		f, err := t.findFunc(entry)
		if err != nil {
			return into, err
		}
		tree, err := t.inlTree(&f)
		if err != nil || tree == nil {
			continue // no tree, or one that cannot be read: nothing to expand
		}
		if f.npcdata <= pcdataInlTreeIndex {
			continue
		}
		off := binary.LittleEndian.Uint32(f.raw[f.hdrSize+4*pcdataInlTreeIndex:])
		found := false
		err = t.eachValue(&f, off, func(index int32) bool {
			if index < 0 {
				return true
			}
			ic, err := t.inlEntry(tree, index)
			if err != nil {
				return true
			}
			if n := t.nameBytes(ic.nameOff); n != nil && bytes.Equal(n, want) {
				found = true
				return false
			}
			return true
		})
		if err != nil {
			return into, fmt.Errorf("inline tree of %s: %w", t.funcName(f.nameOff), err)
		}
		if found {
			into = append(into, funcNameForPrint(t.funcName(f.nameOff)))
		}
	}
	return into, nil
}

// eachValue calls fn with each value of the pc-value table at pctab[off:]
// over f, in pc order, until fn returns false; it decodes as pcvalue does.
func (t *Table) eachValue(f *funcInfo, off uint32, fn func(int32) bool) error {
	if off == 0 {
		return nil
	}
	if uint64(off) >= uint64(len(t.pctab)) {
		return fmt.Errorf("%w: pc table offset %#x out of range", ErrCorrupt, off)
	}
	p := t.pctab[off:]
	pc := f.entry
	val := int32(-1)
	for first := true; len(p) > 0 && pc < f.end; first = false {
		if p[0] == 0 && !first {
			break
		}
		n, uvdelta, ok := readvarint(p)
		if !ok {
			break
		}
		val += int32(-(uvdelta & 1) ^ (uvdelta >> 1))
		p = p[n:]
		n, pcdelta, ok := readvarint(p)
		if !ok {
			break
		}
		p = p[n:]
		pc += uint64(pcdelta) * uint64(t.minLC)
		if !fn(val) {
			return nil
		}
	}
	return nil
}

// nameBytes returns the name at nameOff of funcnametab, in place.
func (t *Table) nameBytes(nameOff int32) []byte {
	return t.NameBytes(Func{nameOff: nameOff})
}
