package report

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Source lines are shown around each site when the file can be read
// here. The file names come from the target, and ctxwatch runs as root:
// only regular files named *.go, of a bounded size, are read, and only
// the few lines around the site are put in the page, so a name such as
// /etc/shadow or a FIFO shows nothing rather than leaking or blocking.
const (
	sourceContext  = 3       // lines shown on either side of the site
	sourceMaxBytes = 8 << 20 // larger files are not read
	sourceMaxRunes = 240     // a longer line is cut
)

// srcLine is one line of a source excerpt.
type srcLine struct {
	N    int
	Text string
	Hit  bool // the site's own line
}

// sourceReader reads excerpts, each file once.
type sourceReader struct {
	dir   string                // where module-relative names are looked for
	files map[string]sourceFile // by the name in the report
}

type sourceFile struct {
	lines []string // nil: not readable here
	path  string   // where it was read
}

func newSourceReader(dir string) *sourceReader {
	if dir == "" {
		dir = "."
	}
	return &sourceReader{dir: dir, files: map[string]sourceFile{}}
}

// excerpt returns the lines around line of file and the path they were
// read from, or nil when the file cannot be read here.
func (r *sourceReader) excerpt(file string, line int) ([]srcLine, string) {
	lines, path := r.lines(file)
	if line < 1 || line > len(lines) {
		return nil, ""
	}
	var out []srcLine
	for n := max(1, line-sourceContext); n <= min(len(lines), line+sourceContext); n++ {
		out = append(out, srcLine{N: n, Text: sourceText(lines[n-1]), Hit: n == line})
	}
	return out, path
}

func (r *sourceReader) lines(file string) ([]string, string) {
	sf, ok := r.files[file]
	if !ok && strings.HasSuffix(file, ".go") {
		for _, p := range sourceCandidates(r.dir, file) {
			if lines, ok := readSource(p); ok {
				sf = sourceFile{lines: lines, path: p}
				break
			}
		}
	}
	r.files[file] = sf
	return sf.lines, sf.path
}

// sourceCandidates lists where file may be: an absolute name as it is,
// then, since a -trimpath build names files by module path
// (github.com/you/app/internal/x.go) and the module's path is not known
// here, the name with its leading elements dropped one by one, under dir.
// An absolute name keeps at least its directory and base name, so that a
// stray main.go in dir is not taken for it.
func sourceCandidates(dir, file string) []string {
	var out []string
	file = filepath.Clean(filepath.FromSlash(file))
	minElems := 1
	if filepath.IsAbs(file) {
		out = append(out, file)
		minElems = 2
	}
	elems := strings.Split(strings.TrimPrefix(file, string(filepath.Separator)), string(filepath.Separator))
	for i := 0; len(elems)-i >= minElems; i++ {
		rest := filepath.Join(elems[i:]...)
		if !filepath.IsLocal(rest) {
			continue // .. elements: stay under dir
		}
		out = append(out, filepath.Join(dir, rest))
	}
	return out
}

// readSource returns the lines of a regular file of bounded size. The
// file is checked before it is opened (opening a device can act on it)
// and after (it may have been replaced), and opened without blocking, as
// a FIFO would block.
func readSource(path string) ([]string, bool) {
	if !regularSource(os.Stat(path)) {
		return nil, false
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if !regularSource(f.Stat()) {
		return nil, false
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, sourceMaxBytes)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err() == nil
}

func regularSource(st os.FileInfo, err error) bool {
	return err == nil && st.Mode().IsRegular() && st.Size() <= sourceMaxBytes
}

// sourceText makes a source line safe to show and of bounded width: tabs
// become spaces, and characters that are not printable are escaped, so a
// right-to-left override in a comment cannot reorder what the page shows.
func sourceText(s string) string {
	s = strings.ReplaceAll(s, "\t", "    ")
	if r := []rune(s); len(r) > sourceMaxRunes {
		s = string(r[:sourceMaxRunes]) + "…"
	}
	return Printable(s)
}
