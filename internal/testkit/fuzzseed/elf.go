// Package fuzzseed makes the seeds of ctxwatch's fuzz tests: small ELF
// files written from scratch, and the Go runtime tables (pcln table, inline
// trees, code, build info, DWARF entries) of real binaries cut down to a
// few functions and types, so that a fuzzer spends its executions on the
// structures and not on megabytes of a whole binary.
//
// It is test support: only tests import it.
package fuzzseed

import (
	"debug/elf"
	"encoding/binary"
)

// Section is a section of an ELF file written by ELF.
type Section struct {
	Name  string
	Type  elf.SectionType
	Flags elf.SectionFlag
	Addr  uint64
	Data  []byte
	// Size, when not zero, is written as the section's size instead of
	// len(Data): the size of SHT_NOBITS sections, or a lie.
	Size  uint64
	Link  uint32 // index in the file's section table (0 is the null section)
	Align uint64
}

// Prog is a program header of an ELF file written by ELF. Its offset and
// file size are those of the section it names.
type Prog struct {
	Type    elf.ProgType
	Flags   elf.ProgFlag
	Section string // the section whose file bytes the segment maps
}

// File describes a little-endian ELF64 file.
type File struct {
	Type     elf.Type
	Machine  elf.Machine
	Sections []Section // without the null section, which ELF adds first
	Progs    []Prog
}

// ELF returns the bytes of the file: the header, the program headers, the
// sections' data, the section names and the section headers, in that order.
func (f *File) ELF() []byte {
	le := binary.LittleEndian
	const ehsize, phsize, shsize = 64, 56, 64
	out := make([]byte, ehsize+phsize*len(f.Progs))

	// Section names: index 0 is the empty name.
	shstr := []byte{0}
	nameOff := make([]uint32, len(f.Sections))
	for i, s := range f.Sections {
		nameOff[i] = uint32(len(shstr))
		shstr = append(append(shstr, s.Name...), 0)
	}
	shstrName := uint32(len(shstr))
	shstr = append(append(shstr, ".shstrtab"...), 0)

	align := func(n uint64) {
		for uint64(len(out))%max(n, 1) != 0 {
			out = append(out, 0)
		}
	}
	offsets := make([]uint64, len(f.Sections))
	for i, s := range f.Sections {
		align(max(s.Align, 8))
		offsets[i] = uint64(len(out))
		if s.Type != elf.SHT_NOBITS {
			out = append(out, s.Data...)
		}
	}
	shstrOff := uint64(len(out))
	out = append(out, shstr...)
	align(8)
	shoff := uint64(len(out))

	sh := make([]byte, shsize) // the null section
	out = append(out, sh...)
	for i, s := range f.Sections {
		size := uint64(len(s.Data))
		if s.Size != 0 {
			size = s.Size
		}
		clear(sh)
		le.PutUint32(sh[0:], nameOff[i])
		le.PutUint32(sh[4:], uint32(s.Type))
		le.PutUint64(sh[8:], uint64(s.Flags))
		le.PutUint64(sh[16:], s.Addr)
		le.PutUint64(sh[24:], offsets[i])
		le.PutUint64(sh[32:], size)
		le.PutUint32(sh[40:], s.Link)
		le.PutUint64(sh[48:], max(s.Align, 1))
		if s.Type == elf.SHT_SYMTAB {
			le.PutUint32(sh[44:], 1) // sh_info: first non-local symbol
			le.PutUint64(sh[56:], 24)
		}
		out = append(out, sh...)
	}
	clear(sh)
	le.PutUint32(sh[0:], shstrName)
	le.PutUint32(sh[4:], uint32(elf.SHT_STRTAB))
	le.PutUint64(sh[24:], shstrOff)
	le.PutUint64(sh[32:], uint64(len(shstr)))
	le.PutUint64(sh[48:], 1)
	out = append(out, sh...)

	for i, p := range f.Progs {
		ph := out[ehsize+phsize*i:]
		le.PutUint32(ph[0:], uint32(p.Type))
		le.PutUint32(ph[4:], uint32(p.Flags))
		for j, s := range f.Sections {
			if s.Name != p.Section {
				continue
			}
			size := uint64(len(s.Data))
			le.PutUint64(ph[8:], offsets[j])
			le.PutUint64(ph[16:], s.Addr)
			le.PutUint64(ph[24:], s.Addr)
			le.PutUint64(ph[32:], size)
			le.PutUint64(ph[40:], size)
			le.PutUint64(ph[48:], 0x1000)
			break
		}
	}

	copy(out, "\x7fELF")
	out[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	out[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	out[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	le.PutUint16(out[16:], uint16(f.Type))
	le.PutUint16(out[18:], uint16(f.Machine))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	if len(f.Progs) > 0 {
		le.PutUint64(out[32:], ehsize)
	}
	le.PutUint64(out[40:], shoff)
	le.PutUint16(out[52:], ehsize)
	le.PutUint16(out[54:], phsize)
	le.PutUint16(out[56:], uint16(len(f.Progs)))
	le.PutUint16(out[58:], shsize)
	le.PutUint16(out[60:], uint16(len(f.Sections)+2))
	le.PutUint16(out[62:], uint16(len(f.Sections)+1))
	return out
}

// Index returns the index in the written section table of the named
// section (the null section is 0), or 0 if there is none.
func (f *File) Index(name string) uint32 {
	for i, s := range f.Sections {
		if s.Name == name {
			return uint32(i + 1)
		}
	}
	return 0
}

// Symbol is an entry of a symbol table written by Symtab.
type Symbol struct {
	Name  string
	Value uint64
}

// Symtab returns the bytes of a .symtab (its first entry the null symbol)
// and of the .strtab it names.
func Symtab(syms []Symbol) (symtab, strtab []byte) {
	le := binary.LittleEndian
	strtab = []byte{0}
	symtab = make([]byte, 24)
	for _, s := range syms {
		e := make([]byte, 24)
		le.PutUint32(e[0:], uint32(len(strtab)))
		e[4] = byte(elf.STB_GLOBAL)<<4 | byte(elf.STT_OBJECT)
		le.PutUint64(e[8:], s.Value)
		symtab = append(symtab, e...)
		strtab = append(append(strtab, s.Name...), 0)
	}
	return symtab, strtab
}
