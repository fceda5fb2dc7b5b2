package compat

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/layout"
)

// TestOTelReleases: each release is an SDK minor of the layout table, newer
// ones need newer Go, and toolchains are given the newest they build.
func TestOTelReleases(t *testing.T) {
	known := layout.OTelVersions()
	for i, r := range OTelReleases {
		minor := r.SDK[:strings.LastIndex(r.SDK, ".")]
		if !slices.Contains(known, minor) {
			t.Errorf("%s: SDK minor %s is not in the layout table %v", r.SDK, minor, known)
		}
		if i > 0 && r.GoMinor >= OTelReleases[i-1].GoMinor {
			t.Errorf("%s needs Go 1.%d, not older than %s's 1.%d: the list is newest first", r.SDK, r.GoMinor, OTelReleases[i-1].SDK, OTelReleases[i-1].GoMinor)
		}
	}
	for minor, want := range map[int]string{17: "", 18: "", 19: "v1.20.0", 20: "v1.24.0", 21: "v1.24.0", 22: "v1.30.0", 23: "v1.30.0", 24: "v1.40.0", 25: "v1.40.0"} {
		r, ok := OTelFor(minor)
		if ok != (want != "") || r.SDK != want {
			t.Errorf("OTelFor(%d) = %q, %v; want %q", minor, r.SDK, ok, want)
		}
	}
}

// TestOTelReleaseModules checks the go.mod files of the releases, where the
// module cache has them: contrib's otelhttp requires exactly the paired
// otel, and (from Go 1.21, which refuses a module whose go directive is
// newer than itself) no module declares a Go newer than GoMinor. Before
// Go 1.21 the directive is advisory; the compat matrix shows that the
// release builds.
func TestOTelReleaseModules(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env GOMODCACHE: %v", err)
	}
	cache := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	for _, r := range OTelReleases {
		for _, m := range []struct{ path, version string }{
			{"go.opentelemetry.io/otel", r.SDK},
			{"go.opentelemetry.io/otel/sdk", r.SDK},
			{"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", r.HTTP},
		} {
			data, err := os.ReadFile(filepath.Join(cache, m.path, "@v", m.version+".mod"))
			if err != nil {
				t.Logf("%s@%s not in the module cache: not checked", m.path, m.version)
				continue
			}
			goMinor, requires := parseMod(string(data))
			if r.GoMinor >= 21 && goMinor > r.GoMinor {
				t.Errorf("%s@%s declares go 1.%d; listed for Go 1.%d", m.path, m.version, goMinor, r.GoMinor)
			}
			if strings.HasSuffix(m.path, "/otelhttp") {
				if got := requires["go.opentelemetry.io/otel"]; got != r.SDK {
					t.Errorf("%s@%s requires otel %s, not %s", m.path, m.version, got, r.SDK)
				}
			}
		}
	}
}

// parseMod returns a go.mod file's go directive (minor) and requirements.
func parseMod(text string) (int, map[string]string) {
	goMinor := 0
	req := map[string]string{}
	inReq := false
	for _, l := range strings.Split(text, "\n") {
		l, _, _ = strings.Cut(l, "//")
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "go":
			parts := strings.Split(f[1], ".")
			if len(parts) >= 2 {
				goMinor, _ = strconv.Atoi(parts[1])
			}
		case len(f) == 2 && f[0] == "require" && f[1] == "(":
			inReq = true
		case len(f) == 1 && f[0] == ")":
			inReq = false
		case len(f) == 3 && f[0] == "require":
			req[f[1]] = f[2]
		case inReq && len(f) == 2:
			req[f[0]] = f[1]
		}
	}
	return goMinor, req
}
