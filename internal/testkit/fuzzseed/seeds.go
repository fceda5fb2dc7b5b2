package fuzzseed

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Builds builds the seed program once per mode and GOARCH and cuts it once,
// for all the tests of a test binary. The zero value is ready to use;
// Close removes the builds (not those of SharedDirEnv).
type Builds struct {
	mu    sync.Mutex
	dir   string
	paths map[string]string
	cuts  map[string]*Go
}

// Path returns the seed program built in mode for goarch.
func (b *Builds) Path(mode, goarch string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.path(mode, goarch)
}

func (b *Builds) path(mode, goarch string) (string, error) {
	key := goarch + "-" + mode
	if p, ok := b.paths[key]; ok {
		return p, nil
	}
	if b.dir == "" {
		dir, err := os.MkdirTemp("", "ctxwatch-fuzzseed")
		if err != nil {
			return "", fmt.Errorf("build seed program: %w", err)
		}
		b.dir, b.paths, b.cuts = dir, map[string]string{}, map[string]*Go{}
	}
	// make fuzz runs one go test per fuzz target: it names a directory
	// in SharedDirEnv so that the seed program is built once for all.
	if shared := os.Getenv(SharedDirEnv); shared != "" {
		p := filepath.Join(shared, "seed-"+key)
		if _, err := os.Stat(p); err == nil {
			b.paths[key] = p
			return p, nil
		}
		p, err := Build(b.dir, mode, goarch)
		if err != nil {
			return "", err
		}
		// Renamed into place whole, so that a concurrent reader never
		// sees half a file.
		if err := copyFile(p, filepath.Join(shared, "seed-"+key)); err != nil {
			return "", err
		}
		b.paths[key] = p
		return p, nil
	}
	p, err := Build(b.dir, mode, goarch)
	if err != nil {
		return "", err
	}
	b.paths[key] = p
	return p, nil
}

// Cut returns Cut(Path(mode, goarch), Keep, 64), made once.
func (b *Builds) Cut(mode, goarch string) (*Go, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := goarch + "-" + mode
	if g, ok := b.cuts[key]; ok {
		return g, nil
	}
	p, err := b.path(mode, goarch)
	if err != nil {
		return nil, err
	}
	g, err := Cut(p, Keep, 64)
	if err != nil {
		return nil, err
	}
	b.cuts[key] = g
	return g, nil
}

// SharedDirEnv names the environment variable that, when set, names a
// directory where Builds keeps its builds for other test processes.
const SharedDirEnv = "CTXWATCH_FUZZSEED_DIR"

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("share seed build: %w", err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("share seed build: %w", err)
	}
	if err := os.Rename(tmp, to); err != nil {
		return fmt.Errorf("share seed build: %w", err)
	}
	return nil
}

// Close removes the builds (not those of SharedDirEnv).
func (b *Builds) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir == "" {
		return nil
	}
	return os.RemoveAll(b.dir)
}

// Worker reports whether this test process is a fuzz worker (go test
// -fuzz starts them with -test.fuzzworker). A worker ignores the seeds of
// f.Add, which only the coordinating process runs: building them there
// would only take time from fuzzing.
func Worker() bool {
	fl := flag.Lookup("test.fuzzworker")
	return fl != nil && fl.Value.String() == "true"
}
