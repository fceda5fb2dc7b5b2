package fuzzseed

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// Go is what Cut keeps of a Go binary: a pcln table, inline trees and code
// for a few functions, and the binary's build information and moduledata.
type Go struct {
	Machine elf.Machine
	PIE     bool

	// Pclntab is a Go 1.20+ pcln table (magic 0xfffffff1) of the kept
	// functions only, their entries relative to TextAddr.
	Pclntab []byte
	// Gofunc is the go:func.* data that Pclntab's inline tree funcdata
	// point into; other funcdata (GC maps) are dropped.
	Gofunc []byte
	// Text is the kept functions' machine code, packed one after the
	// other from TextAddr in the order of Funcs.
	Text     []byte
	TextAddr uint64
	Funcs    []string
	Code     [][]byte // each kept function's code, a part of Text

	BuildInfo []byte // the .go.buildinfo section, whole
}

// Cut reads the unstripped Go 1.20+ binary at path and keeps the functions
// whose name satisfies keep (at most limit of them, in address order).
func Cut(path string, keep func(name string) bool, limit int) (*Go, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cut %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("cut %s: read symbols (an unstripped binary is needed): %w", path, err)
	}
	sym := func(names ...string) (uint64, bool) {
		for _, s := range syms {
			for _, n := range names {
				if s.Name == n {
					return s.Value, true
				}
			}
		}
		return 0, false
	}
	text, ok1 := sym("runtime.text")
	gofunc, ok2 := sym("go:func.*", "go.func.*")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("cut %s: no runtime.text or go:func.* symbol", path)
	}
	g := &Go{Machine: f.Machine, PIE: f.Type == elf.ET_DYN, TextAddr: text}
	read := func(name string) ([]byte, *elf.Section, error) {
		s := f.Section(name)
		if s == nil {
			return nil, nil, fmt.Errorf("cut %s: no %s section", path, name)
		}
		d, err := s.Data()
		if err != nil {
			return nil, nil, fmt.Errorf("cut %s: read %s: %w", path, name, err)
		}
		return d, s, nil
	}
	tab, _, err := read(".gopclntab")
	if err != nil {
		return nil, err
	}
	if g.BuildInfo, _, err = read(".go.buildinfo"); err != nil {
		return nil, err
	}
	code, err := dataAt(f, text)
	if err != nil {
		return nil, fmt.Errorf("cut %s: code at runtime.text: %w", path, err)
	}
	gf, err := dataAt(f, gofunc)
	if err != nil {
		return nil, fmt.Errorf("cut %s: go:func.* data: %w", path, err)
	}
	if len(tab) < 72 {
		return nil, fmt.Errorf("cut %s: .gopclntab of %d bytes", path, len(tab))
	}
	if err := g.cutPclntab(tab, code, gf, keep, limit); err != nil {
		return nil, fmt.Errorf("cut %s: %w", path, err)
	}
	return g, nil
}

// dataAt returns the bytes of f's allocated section holding addr, from
// addr on.
func dataAt(f *elf.File, addr uint64) ([]byte, error) {
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || addr < s.Addr || addr-s.Addr >= s.Size {
			continue
		}
		d, err := s.Data()
		if err != nil {
			return nil, err
		}
		return d[addr-s.Addr:], nil
	}
	return nil, fmt.Errorf("no section holds %#x", addr)
}

// Offsets of the Go 1.20+ pcHeader and _func used below (see
// internal/pcln and runtime/symtab.go).
const (
	hdrSize       = 72
	funcHdr       = 44
	funcNameOff   = 4
	funcPcsp      = 16
	funcPcfile    = 20
	funcPcln      = 24
	funcNpcdata   = 28
	funcCuOffset  = 32
	funcNfuncdata = 43

	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3
	inlinedCallSize    = 16
	noFuncdata         = ^uint32(0)
)

// cutPclntab fills Pclntab, Gofunc, Text and Funcs from the whole table
// tab, the code from runtime.text and the go:func.* data gf.
func (g *Go) cutPclntab(tab, code, gf []byte, keep func(string) bool, limit int) error {
	le := binary.LittleEndian
	if le.Uint32(tab) != 0xfffffff1 {
		return fmt.Errorf("pclntab magic %#x: only Go 1.20+ tables are cut", le.Uint32(tab))
	}
	word := func(i int) uint64 { return le.Uint64(tab[8+8*i:]) }
	nfunc := word(0)
	funcnametab := tab[word(3):word(4)]
	cutab := tab[word(4):word(5)]
	filetab := tab[word(5):word(6)]
	pctab := tab[word(6):word(7)]
	pclntable := tab[word(7):]
	cstr := func(b []byte, off uint32) string {
		if int(off) >= len(b) {
			return ""
		}
		s := b[off:]
		return string(s[:bytes.IndexByte(s, 0)])
	}

	var (
		names    []byte
		nameAt   = map[string]uint32{}
		files    []byte
		fileAt   = map[string]uint32{}
		nfiles   uint64
		newCutab []byte
		newPctab = []byte{0} // offset 0 means "no table"
		pcAt     = map[uint32]uint32{}
		recs     []byte
		ftab     []uint32
	)
	addName := func(s string) uint32 {
		if off, ok := nameAt[s]; ok {
			return off
		}
		off := uint32(len(names))
		nameAt[s] = off
		names = append(append(names, s...), 0)
		return off
	}
	addPctab := func(off uint32) (uint32, []int32, error) {
		if off == 0 {
			return 0, nil, nil
		}
		n, vals, ok := pcTable(pctab[off:])
		if !ok {
			return 0, nil, fmt.Errorf("pc table at %#x does not decode", off)
		}
		if at, ok := pcAt[off]; ok {
			return at, vals, nil
		}
		at := uint32(len(newPctab))
		pcAt[off] = at
		newPctab = append(newPctab, pctab[off:int(off)+n]...)
		return at, vals, nil
	}
	for i := uint64(0); i < nfunc && len(g.Funcs) < limit; i++ {
		entry, funcOff := le.Uint32(pclntable[8*i:]), le.Uint32(pclntable[8*i+4:])
		next := le.Uint32(pclntable[8*i+8:])
		rec := pclntable[funcOff:]
		name := cstr(funcnametab, le.Uint32(rec[funcNameOff:]))
		if !keep(name) {
			continue
		}
		npcdata, nfuncdata := le.Uint32(rec[funcNpcdata:]), uint32(rec[funcNfuncdata])
		r := bytes.Clone(rec[:funcHdr+4*npcdata+4*nfuncdata])
		ftab = append(ftab, uint32(len(g.Text)), uint32(len(recs)))
		le.PutUint32(r, uint32(len(g.Text)))
		g.Text = append(g.Text, code[entry:next]...)
		g.Code = append(g.Code, code[entry:next:next])
		le.PutUint32(r[funcNameOff:], addName(name))

		var fileVals, inlVals []int32
		for k, at := range []uint32{funcPcsp, funcPcfile, funcPcln} {
			off, vals, err := addPctab(le.Uint32(r[at:]))
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			le.PutUint32(r[at:], off)
			if k == 1 {
				fileVals = vals
			}
		}
		for j := uint32(0); j < npcdata; j++ {
			at := funcHdr + 4*j
			off, vals, err := addPctab(le.Uint32(r[at:]))
			if err != nil {
				return fmt.Errorf("%s: pcdata %d: %w", name, j, err)
			}
			le.PutUint32(r[at:], off)
			if j == pcdataInlTreeIndex {
				inlVals = vals
			}
		}

		// The function's files: cutab[cuOffset+fileno] for each fileno
		// its pcfile table yields, rewritten to the new filetab.
		cu := le.Uint32(r[funcCuOffset:])
		le.PutUint32(r[funcCuOffset:], uint32(len(newCutab)/4))
		for k := int32(0); k <= maxVal(fileVals); k++ {
			off := le.Uint32(cutab[4*(cu+uint32(k)):])
			if off != noFuncdata {
				file := cstr(filetab, off)
				if _, ok := fileAt[file]; !ok {
					fileAt[file] = uint32(len(files))
					files = append(append(files, file...), 0)
					nfiles++
				}
				off = fileAt[file]
			}
			newCutab = le.AppendUint32(newCutab, off)
		}

		// Funcdata: the inline tree is kept (its entries name functions
		// of the new funcnametab); GC maps are dropped.
		fd := funcHdr + 4*npcdata
		for j := uint32(0); j < nfuncdata; j++ {
			at := fd + 4*j
			off := le.Uint32(r[at:])
			if j != funcdataInlTree || off == noFuncdata {
				le.PutUint32(r[at:], noFuncdata)
				continue
			}
			n := int(maxVal(inlVals)) + 1
			if int(off)+n*inlinedCallSize > len(gf) {
				return fmt.Errorf("%s: inline tree beyond go:func.*", name)
			}
			le.PutUint32(r[at:], uint32(len(g.Gofunc)))
			for k := range n {
				e := bytes.Clone(gf[int(off)+k*inlinedCallSize:][:inlinedCallSize])
				le.PutUint32(e[4:], addName(cstr(funcnametab, le.Uint32(e[4:]))))
				g.Gofunc = append(g.Gofunc, e...)
			}
		}
		recs = append(recs, r...)
		g.Funcs = append(g.Funcs, name)
	}
	if len(g.Funcs) == 0 {
		return errors.New("no function kept")
	}
	ftab = append(ftab, uint32(len(g.Text)), 0)

	out := make([]byte, hdrSize)
	copy(out, tab[:8])
	le.PutUint64(out[8:], uint64(len(g.Funcs)))
	le.PutUint64(out[16:], nfiles)
	le.PutUint64(out[24:], word(2))
	put := func(i int, part []byte) {
		le.PutUint64(out[8+8*i:], uint64(len(out)))
		out = append(out, part...)
	}
	put(3, names)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	put(4, newCutab)
	put(5, files)
	put(6, newPctab)
	for len(out)%8 != 0 {
		out = append(out, 0)
	}
	// The records follow the ftab: their offsets are from its start.
	pcln := make([]byte, 0, 4*len(ftab)+len(recs))
	for k, v := range ftab {
		if k%2 == 1 && k < len(ftab)-1 {
			v += uint32(4 * len(ftab))
		}
		pcln = le.AppendUint32(pcln, v)
	}
	put(7, append(pcln, recs...))
	g.Pclntab = out
	return nil
}

// pcTable decodes the pc-value table at the start of p as runtime.pcvalue
// does: it returns the table's length in bytes, its terminating zero
// included, and the values it takes.
func pcTable(p []byte) (n int, vals []int32, ok bool) {
	val := int32(-1)
	for i := 0; i < len(p); {
		if p[i] == 0 && i > 0 {
			return i + 1, vals, true
		}
		uv, w := binary.Uvarint(p[i:])
		if w <= 0 {
			return 0, nil, false
		}
		i += w
		val += int32(-(uint32(uv) & 1) ^ (uint32(uv) >> 1))
		vals = append(vals, val)
		if _, w = binary.Uvarint(p[i:]); w <= 0 {
			return 0, nil, false
		}
		i += w
	}
	return 0, nil, false
}

func maxVal(vals []int32) int32 {
	m := int32(-1)
	for _, v := range vals {
		m = max(m, v)
	}
	return m
}
