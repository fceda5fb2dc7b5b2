package fuzzseed

import (
	"debug/elf"
	"encoding/binary"
)

// Sizes and offsets of the Go 1.20-1.26 runtime.moduledata on 64-bit (see
// internal/pcln/moduledata.go).
const (
	moduledataSize = 352
	mdFuncnametab  = 8
	mdMinpc        = 160
	mdText         = 176
	mdEtext        = 184
	mdTypes        = 296
	mdRodata       = 312
	mdGofunc       = 320
)

// Addresses of a written ELF: each section starts on its own page after
// the previous one.
func pageAfter(addr uint64, n int) uint64 { return (addr + uint64(n) + 0xfff) &^ 0xfff }

// ELF returns a small executable holding the cut functions: .text (mapped
// by an executable PT_LOAD), .rodata with their inline trees (go:func.*),
// .gopclntab, the real .go.buildinfo and either a .symtab naming
// runtime.text, go:func.* and runtime.types or, when stripped, a
// .go.module holding a moduledata that points at them, as the linker
// leaves it in a binary linked with -s.
func (g *Go) ELF(stripped bool) []byte {
	le := binary.LittleEndian
	rodata := pageAfter(g.TextAddr, len(g.Text))
	// go:func.* must lie inside .rodata even when no function has an
	// inline tree.
	gofunc := append(g.Gofunc[:len(g.Gofunc):len(g.Gofunc)], make([]byte, 16)...)
	pcln := pageAfter(rodata, len(gofunc))
	buildinfo := pageAfter(pcln, len(g.Pclntab))
	module := pageAfter(buildinfo, len(g.BuildInfo))
	f := &File{Type: elf.ET_EXEC, Machine: g.Machine}
	if g.PIE {
		f.Type = elf.ET_DYN
	}
	alloc := elf.SHF_ALLOC
	f.Sections = []Section{
		{Name: ".text", Type: elf.SHT_PROGBITS, Flags: alloc | elf.SHF_EXECINSTR, Addr: g.TextAddr, Data: g.Text, Align: 32},
		{Name: ".rodata", Type: elf.SHT_PROGBITS, Flags: alloc, Addr: rodata, Data: gofunc, Align: 32},
		{Name: ".gopclntab", Type: elf.SHT_PROGBITS, Flags: alloc, Addr: pcln, Data: g.Pclntab, Align: 32},
		{Name: ".go.buildinfo", Type: elf.SHT_PROGBITS, Flags: alloc | elf.SHF_WRITE, Addr: buildinfo, Data: g.BuildInfo, Align: 16},
	}
	// debug/buildinfo reads through the program headers.
	f.Progs = []Prog{
		{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_X, Section: ".text"},
		{Type: elf.PT_LOAD, Flags: elf.PF_R, Section: ".rodata"},
		{Type: elf.PT_LOAD, Flags: elf.PF_R, Section: ".gopclntab"},
		{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_W, Section: ".go.buildinfo"},
	}
	if stripped {
		md := make([]byte, moduledataSize)
		le.PutUint64(md, pcln)
		le.PutUint64(md[mdFuncnametab:], pcln+le.Uint64(g.Pclntab[8+8*3:]))
		le.PutUint64(md[mdMinpc:], g.TextAddr)
		le.PutUint64(md[mdText:], g.TextAddr)
		le.PutUint64(md[mdEtext:], g.TextAddr+uint64(len(g.Text)))
		le.PutUint64(md[mdTypes:], rodata)
		le.PutUint64(md[mdRodata:], rodata)
		le.PutUint64(md[mdGofunc:], rodata)
		f.Sections = append(f.Sections, Section{Name: ".go.module", Type: elf.SHT_PROGBITS, Flags: alloc | elf.SHF_WRITE, Addr: module, Data: md, Align: 32})
		return f.ELF()
	}
	symtab, strtab := Symtab([]Symbol{
		{"runtime.text", g.TextAddr},
		{"go:func.*", rodata},
		{"runtime.types", rodata},
	})
	f.Sections = append(f.Sections,
		Section{Name: ".symtab", Type: elf.SHT_SYMTAB, Data: symtab, Link: uint32(len(f.Sections) + 2), Align: 8},
		Section{Name: ".strtab", Type: elf.SHT_STRTAB, Data: strtab, Align: 1},
	)
	return f.ELF()
}
