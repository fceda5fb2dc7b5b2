package target

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestTrim: after Trim, the file's pages leave this process's resident
// memory, and the Binary answers as before (pages come back from the file).
func TestTrim(t *testing.T) {
	b := openProbe(t, modeDefault)
	// Touch every page, as inspecting a large binary may.
	var sum byte
	for i := 0; i < len(b.image); i += os.Getpagesize() {
		sum += b.image[i]
	}
	runtime.KeepAlive(sum)
	before := rssFileKB(t)
	fn, err := b.Func("main.work")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Trim(); err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	if size := uint64(len(b.image)) / 1024; before-after < size/2 {
		t.Errorf("file-backed RSS %d kB before Trim, %d after: want about %d kB (the file) less", before, after, size)
	}
	again, err := b.Func("main.work")
	if err != nil || again != fn {
		t.Errorf("Func after Trim = %+v, %v; want %+v", again, err, fn)
	}
	frames, err := b.LineTable().FramesForReturn(fn.Entry + 1)
	if err != nil || len(frames) == 0 || frames[0].Function != "main.work" {
		t.Errorf("line table after Trim: %+v, %v", frames, err)
	}
}

func rssFileKB(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
