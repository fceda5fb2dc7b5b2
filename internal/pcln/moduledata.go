package pcln

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// moduledata holds the fields of runtime.moduledata that we need.
type moduledata struct {
	addr   uint64 // address of runtime.firstmoduledata
	text   uint64
	gofunc uint64
}

// Offsets of runtime.moduledata fields on 64-bit targets. The struct starts
//
//	pcHeader     *pcHeader     //   0
//	funcnametab  []byte        //   8
//	cutab        []uint32      //  32
//	filetab      []byte        //  56
//	pctab        []byte        //  80
//	pclntable    []byte        // 104
//	ftab         []functab     // 128
//	findfunctab  uintptr       // 152
//	minpc, maxpc uintptr       // 160, 168
//	text, etext  uintptr       // 176, 184
//	noptrdata, enoptrdata, data, edata, bss, ebss, noptrbss, enoptrbss // 192..248
//	covctrs, ecovctrs uintptr  // 256, 264 (Go 1.20+ only)
//	end, gcdata, gcbss         // 272.. (1.20+) / 256.. (1.18, 1.19)
//	types, etypes              // 296, 304 / 280, 288
//	rodata                     // 312 / 296
//	gofunc                     // 320 / 304
//
// Checked against runtime/symtab.go of Go 1.26 (this toolchain) and the
// published layouts of Go 1.18-1.19 (no covctrs) and Go 1.20-1.25 (covctrs
// added in 1.20; fields up to gofunc unchanged since). The pclntab magic
// tells the two layouts apart: 0xfffffff0 is Go 1.18/1.19, 0xfffffff1 is
// Go 1.20+.
const (
	mdFuncnametab = 8
	mdMinpc       = 160
	mdText        = 176
	mdEtext       = 184

	mdTypes120, mdRodata120, mdGofunc120 = 296, 312, 320
	mdTypes118, mdRodata118, mdGofunc118 = 280, 296, 304
)

// findModuledata locates runtime.firstmoduledata in a (possibly stripped)
// binary: it scans the writable data sections (.go.module first) for an 8-byte aligned word
// equal to the address of .gopclntab (moduledata.pcHeader, its first field)
// and accepts the candidate only if the following fields are consistent
// with the pclntab header and the ELF sections.
func findModuledata(f *elf.File, pclnAddr uint64, t *Table) (*moduledata, error) {
	typesOff, rodataOff, gofuncOff := mdTypes120, mdRodata120, mdGofunc120
	if t.magic == magic118 {
		typesOff, rodataOff, gofuncOff = mdTypes118, mdRodata118, mdGofunc118
	}
	size := gofuncOff + 8
	// Expected funcnametab pointer: pcHeader + funcnameOffset. Recompute it
	// from the distance of t.funcnametab to the start of the header, which
	// parseHeader took from the header word.
	var wantFuncnametab uint64
	if s := f.Section(".gopclntab"); s != nil {
		if d, err := sectionData(s); err == nil && len(d) >= 8+8*4 {
			wantFuncnametab = pclnAddr + binary.LittleEndian.Uint64(d[8+8*3:])
		}
	}
	le := binary.LittleEndian
	// Go 1.26 (and, per the linker, recent releases) places
	// runtime.firstmoduledata in its own ".go.module" section; older
	// releases put it in .noptrdata. Try .go.module first, then every other
	// allocated writable section with file data.
	var sects []*elf.Section
	if s := f.Section(".go.module"); s != nil {
		sects = append(sects, s)
	}
	for _, s := range f.Sections {
		if s.Name != ".go.module" && s.Flags&(elf.SHF_ALLOC|elf.SHF_WRITE) == elf.SHF_ALLOC|elf.SHF_WRITE {
			sects = append(sects, s)
		}
	}
	for _, s := range sects {
		if s.Type == elf.SHT_NOBITS {
			continue
		}
		d, err := sectionData(s)
		if err != nil {
			continue
		}
		start := (8 - s.Addr%8) % 8
		for off := start; off+uint64(size) <= uint64(len(d)); off += 8 {
			if le.Uint64(d[off:]) != pclnAddr {
				continue
			}
			w := func(o int) uint64 { return le.Uint64(d[off+uint64(o):]) }
			if w(mdFuncnametab) != wantFuncnametab {
				continue
			}
			text, etext := w(mdText), w(mdEtext)
			if text == 0 || etext < text || w(mdMinpc) < text {
				continue
			}
			if ts := f.Section(".text"); ts != nil && (text < ts.Addr || etext > ts.Addr+ts.Size+4096) {
				continue
			}
			gofunc, rodata, types := w(gofuncOff), w(rodataOff), w(typesOff)
			if gofunc < rodata || gofunc < types {
				continue
			}
			if _, err := dataAt(f, gofunc); err != nil {
				continue
			}
			return &moduledata{addr: s.Addr + off, text: text, gofunc: gofunc}, nil
		}
	}
	return nil, fmt.Errorf("%w: runtime moduledata not found", ErrNoGofunc)
}
