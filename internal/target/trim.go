package target

import (
	"fmt"
	"syscall"
)

// Trim hands the pages of the file that inspection read back to the
// kernel; any touched again are read from the file again. A watched
// process's Binary stays open for its line table, which touches the
// pclntab only: without Trim, an agent watching many executables would
// keep each file whole in its resident memory.
func (b *Binary) Trim() error {
	if len(b.image) == 0 {
		return nil
	}
	if err := syscall.Madvise(b.image, syscall.MADV_DONTNEED); err != nil {
		return fmt.Errorf("release the pages of %s: %w", b.Path, err)
	}
	return nil
}
