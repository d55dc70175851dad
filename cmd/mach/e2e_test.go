package main

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDispatchEndToEnd builds mach and mach-archs and checks that
// `mach archs` is `mach-archs`, output and exit status included.
func TestDispatchEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", ".", "../mach-archs")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	direct, err := exec.Command(filepath.Join(dir, "mach-archs"), "--json").Output()
	require.NoError(t, err)
	via, err := exec.Command(filepath.Join(dir, "mach"), "archs", "--json").Output()
	require.NoError(t, err)
	require.Equal(t, string(direct), string(via))

	err = exec.Command(filepath.Join(dir, "mach"), "archs", "--nosuch").Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 2, ee.ExitCode())

	err = exec.Command(filepath.Join(dir, "mach"), "nosuch").Run()
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 2, ee.ExitCode())
}
