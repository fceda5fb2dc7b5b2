package target

import (
	"bytes"
	"compress/zlib"
	"debug/elf"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/testkit/fuzzseed"
)

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// sectionsBinary returns a Binary over a small ELF file of the given
// sections, as far inspected as the DWARF and code readers need.
func sectionsBinary(t *testing.T, secs ...fuzzseed.Section) *Binary {
	t.Helper()
	f := &fuzzseed.File{Type: elf.ET_EXEC, Machine: elf.EM_X86_64, Sections: secs}
	image := f.ELF()
	ef, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		t.Fatalf("the test's ELF does not parse: %v", err)
	}
	return &Binary{Path: "crafted", Arch: "amd64", HasDWARF: true, elf: ef, image: image}
}

// TestDWARFClaimsDoNotAllocate gives the DWARF reader sections that claim
// a huge size once decompressed: a GNU .zdebug_info whose 64 KB of zlib
// data inflate to 64 MB of the 1 TB its header claims, and an
// SHF_COMPRESSED .debug_info whose header claims 1 TB. Both must fail
// with ErrNoLayout and an error naming the limit, before decompressing.
func TestDWARFClaimsDoNotAllocate(t *testing.T) {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zeros := make([]byte, 1<<20)
	for range 64 {
		zw.Write(zeros)
	}
	zw.Close()
	zdebug := binary.BigEndian.AppendUint64([]byte("ZLIB"), 1<<40)
	zdebug = append(zdebug, z.Bytes()...)

	chdr := make([]byte, 24) // Elf64_Chdr: type, reserved, size, addralign
	binary.LittleEndian.PutUint32(chdr, uint32(elf.COMPRESS_ZLIB))
	binary.LittleEndian.PutUint64(chdr[8:], 1<<40)
	binary.LittleEndian.PutUint64(chdr[16:], 1)
	compressed := append(chdr, z.Bytes()...)

	for _, c := range []struct {
		name string
		sec  fuzzseed.Section
	}{
		{".zdebug_info", fuzzseed.Section{Name: ".zdebug_info", Type: elf.SHT_PROGBITS, Data: zdebug}},
		{"SHF_COMPRESSED .debug_info", fuzzseed.Section{Name: ".debug_info", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: compressed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := sectionsBinary(t, c.sec,
				fuzzseed.Section{Name: ".debug_abbrev", Type: elf.SHT_PROGBITS, Data: []byte{0}})
			var err error
			n := allocated(func() { _, err = b.FieldOffset("runtime.g", "goid") })
			if !errors.Is(err, ErrNoLayout) || !strings.Contains(err.Error(), "over limit") {
				t.Fatalf("FieldOffset with a 1 TB DWARF claim: %v, want ErrNoLayout over limit", err)
			}
			if n > 4<<20 {
				t.Errorf("FieldOffset with a 1 TB DWARF claim allocated %d bytes, want under 4 MiB", n)
			}
		})
	}
}

// TestBuildInfoClaimDoesNotAllocate inspects a file whose build info (Go
// 1.18+ inline format) claims a Go version string of 1 TB. debug/buildinfo
// reads it in chunks of at most 10 MB (internal/saferio) and fails at the
// end of the section: the claim costs one chunk, not 1 TB.
func TestBuildInfoClaimDoesNotAllocate(t *testing.T) {
	info := make([]byte, 32)
	copy(info, "\xff Go buildinf:")
	info[14], info[15] = 8, 2 // pointer size; flags: little endian, inline strings
	info = binary.AppendUvarint(info, 1<<40)
	info = append(info, "go1.26.8"...)
	image := buildInfoELF(info)
	var err error
	n := allocated(func() { _, err = inspectBytes(image) })
	if !errors.Is(err, ErrNotGo) {
		t.Fatalf("inspect with a 1 TB version string: %v, want ErrNotGo", err)
	}
	if n > 16<<20 {
		t.Errorf("inspect with a 1 TB version string allocated %d bytes, want under 16 MiB", n)
	}
}

// TestReadCodeWrappingOffset decodes a function in a segment whose file
// offset is near 2^64: the bounds check must not wrap around.
func TestReadCodeWrappingOffset(t *testing.T) {
	const addr = 0x401000
	b := codeBinary(t, elf.EM_X86_64, addr, []byte{0x55, 0xc3})
	// debug/elf (Go 1.26) rejects such a program header when it parses
	// the file; readCode must not rely on it.
	b.elf.Progs[0].Off = ^uint64(0) - 1
	fn := Func{Name: "f", Entry: addr, End: addr + 2}
	if _, err := b.Returns(fn); err == nil || !strings.Contains(err.Error(), "beyond the end of the file") {
		t.Fatalf("Returns in a segment at file offset 2^64-2: %v, want beyond the end of the file", err)
	}
}

// TestTypePkgPathWrappingLength reads a package path whose varint length
// is near 2^64: the bounds check must not wrap around.
func TestTypePkgPathWrappingLength(t *testing.T) {
	data := make([]byte, 256)
	const typ = 8
	data[typ+abiTypeTFlag] = 1 // uncommon
	data[typ+abiTypeKind] = kindStruct
	binary.LittleEndian.PutUint32(data[typ+uint64(kindSize(kindStruct)):], 160) // UncommonType.PkgPath
	binary.PutUvarint(data[161:], ^uint64(0)-2)
	if got := typePkgPath(data, 0, typ); got != "" {
		t.Fatalf("typePkgPath with a length of 2^64-3 = %q, want none", got)
	}
}
