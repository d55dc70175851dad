// Package mach_test holds repository-wide policy tests.
package mach_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// importLight are the discovery commands: they must run on any host, build
// with CGO_ENABLED=0 and never pull in compute backends. This is a statement
// of policy, in the manner of Go's own deps_test.go: do not change this list
// to make a build pass; move the offending import instead.
var importLight = []string{"./cmd/mach", "./cmd/mach-archs", "./cmd/mach-models", "./cmd/mach-check"}

type listedPackage struct {
	ImportPath string
	Standard   bool
	CgoFiles   []string
	Module     *struct{ Path string }
}

func goList(t *testing.T, env []string, pkgs ...string) []listedPackage {
	t.Helper()
	args := append([]string{"list", "-deps", "-json=ImportPath,Standard,CgoFiles,Module"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	var res []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPackage
		require.NoError(t, dec.Decode(&p))
		res = append(res, p)
	}
	return res
}

func TestImportLight(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, cmd := range importLight {
		t.Run(cmd, func(t *testing.T) {
			// With cgo off, the whole dependency graph must be cgo-free
			// and outside kernels/.
			for _, p := range goList(t, []string{"CGO_ENABLED=0"}, cmd) {
				require.NotContains(t, p.ImportPath, "/kernels", "%s depends on compute package %s", cmd, p.ImportPath)
				require.NotEqual(t, "runtime/cgo", p.ImportPath, "%s depends on cgo", cmd)
				require.Empty(t, p.CgoFiles, "%s depends on %s, which uses cgo", cmd, p.ImportPath)
			}
			// With cgo on (the default where a C compiler exists), no
			// non-standard package may use cgo. The standard library's
			// net and os/user do, optionally; the Makefile and the
			// release build these commands with CGO_ENABLED=0.
			for _, p := range goList(t, []string{"CGO_ENABLED=1"}, cmd) {
				require.False(t, strings.Contains(p.ImportPath, "/kernels"), "%s depends on %s", cmd, p.ImportPath)
				if !p.Standard {
					require.Empty(t, p.CgoFiles, "%s depends on %s, which uses cgo", cmd, p.ImportPath)
				}
			}
		})
	}
}

func TestImportLightBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	cmd := exec.Command("go", append([]string{"build", "-o", t.TempDir() + "/"}, importLight...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "CGO_ENABLED=0 go build: %s", out)
}
