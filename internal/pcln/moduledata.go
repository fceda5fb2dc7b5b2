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
	// Go 1.27 added typedesclen after types and itaboffset, itabsize
	// before rodata (same pclntab magic as 1.20).
	mdTypes127, mdRodata127, mdGofunc127 = 296, 336, 344
)

// mdLayout is where moduledata keeps types, rodata and gofunc.
type mdLayout struct{ types, rodata, gofunc int }

// findModuledata locates runtime.firstmoduledata in a (possibly stripped)
// binary: it scans the writable data sections (.go.module first) for an 8-byte aligned word
// equal to the address of .gopclntab (moduledata.pcHeader, its first field)
// and accepts the candidate only if the following fields are consistent
// with the pclntab header and the ELF sections.
func findModuledata(im image, pclnAddr uint64, t *Table) (*moduledata, error) {
	f := im.f
	layouts := []mdLayout{{mdTypes120, mdRodata120, mdGofunc120}, {mdTypes127, mdRodata127, mdGofunc127}}
	if t.magic == magic118 {
		layouts = []mdLayout{{mdTypes118, mdRodata118, mdGofunc118}}
	}
	size := mdGofunc127 + 8
	// Expected funcnametab pointer: pcHeader + funcnameOffset. Recompute it
	// from the distance of t.funcnametab to the start of the header, which
	// parseHeader took from the header word.
	var wantFuncnametab uint64
	if s := PclntabSection(f); s != nil {
		if d, err := im.section(s); err == nil && len(d) >= 8+8*4 {
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
		d, err := im.section(s)
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
			for _, l := range layouts {
				gofunc, rodata, types := w(l.gofunc), w(l.rodata), w(l.types)
				// Up to Go 1.26 go:func.* follows the type data; 1.27
				// puts it in the pclntab, before its own .go.type. PIE
				// binaries keep the type data in .data.rel.ro, after
				// .rodata and go:func.*.
				if gofunc == 0 || gofunc < rodata || (l.gofunc != mdGofunc127 && gofunc < types && f.Type != elf.ET_DYN) {
					continue
				}
				if _, err := im.dataAt(gofunc); err != nil {
					continue
				}
				return &moduledata{addr: s.Addr + off, text: text, gofunc: gofunc}, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: runtime moduledata not found", ErrNoGofunc)
}

// Text returns the address the table's function entries are relative to
// (runtime.text), 0 for the Go 1.16/1.17 table, whose entries are absolute.
// With external linking (cgo) it is not the start of .text.
func (t *Table) Text() uint64 {
	if t.magic == magic116 {
		return 0
	}
	return t.text
}
