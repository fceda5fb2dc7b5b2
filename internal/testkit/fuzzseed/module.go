package fuzzseed

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// Module is a binary's runtime.firstmoduledata with what it points at, as
// internal/pcln looks for it in a stripped binary: the real addresses.
type Module struct {
	Data, Header       []byte // the .go.module section; .gopclntab's first 72 bytes (pcHeader)
	Addr, PclntabAddr  uint64 // of .go.module and .gopclntab
	TextAddr, TextSize uint64 // of .text
	GofuncAddr         uint64 // moduledata.gofunc (Go 1.20-1.26 layout)
	GofuncData         []byte // 64 bytes at GofuncAddr
	PIE                bool   // ET_DYN
}

// ReadModule reads the moduledata of the Go 1.20+ binary at path, which
// may be stripped.
func ReadModule(path string) (*Module, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read moduledata of %s: %w", path, err)
	}
	defer f.Close()
	m := Module{PIE: f.Type == elf.ET_DYN}
	for _, s := range []struct {
		name string
		data *[]byte
		addr *uint64
	}{{".go.module", &m.Data, &m.Addr}, {".gopclntab", &m.Header, &m.PclntabAddr}, {".text", nil, &m.TextAddr}} {
		sec := f.Section(s.name)
		if sec == nil {
			return nil, fmt.Errorf("read moduledata of %s: no %s section", path, s.name)
		}
		*s.addr = sec.Addr
		if s.name == ".text" {
			m.TextSize = sec.Size
			continue
		}
		if *s.data, err = sec.Data(); err != nil {
			return nil, fmt.Errorf("read moduledata of %s: %s: %w", path, s.name, err)
		}
	}
	if len(m.Data) < moduledataSize || len(m.Header) < hdrSize {
		return nil, fmt.Errorf("read moduledata of %s: sections too short", path)
	}
	m.Header = m.Header[:hdrSize:hdrSize]
	m.GofuncAddr = binary.LittleEndian.Uint64(m.Data[mdGofunc:])
	d, err := dataAt(f, m.GofuncAddr)
	if err != nil {
		return nil, fmt.Errorf("read moduledata of %s: go:func.*: %w", path, err)
	}
	m.GofuncData = d[:min(64, len(d)):min(64, len(d))]
	return &m, nil
}

// ELF returns a small file holding m's sections at their addresses: the
// moduledata, the pcln header, .text (no bits) and 64 bytes of go:func.*.
func (m *Module) ELF() []byte {
	alloc := elf.SHF_ALLOC
	f := &File{Type: elf.ET_EXEC, Machine: elf.EM_X86_64}
	if m.PIE {
		f.Type = elf.ET_DYN
	}
	f.Sections = []Section{
		{Name: ".text", Type: elf.SHT_NOBITS, Flags: alloc | elf.SHF_EXECINSTR, Addr: m.TextAddr, Size: m.TextSize},
		{Name: ".rodata", Type: elf.SHT_PROGBITS, Flags: alloc, Addr: m.GofuncAddr, Data: m.GofuncData},
		{Name: ".gopclntab", Type: elf.SHT_PROGBITS, Flags: alloc, Addr: m.PclntabAddr, Data: m.Header},
		{Name: ".go.module", Type: elf.SHT_PROGBITS, Flags: alloc | elf.SHF_WRITE, Addr: m.Addr, Data: m.Data},
	}
	return f.ELF()
}
