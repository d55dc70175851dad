package hostmem

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMeminfo(t *testing.T) {
	info, err := parseMeminfo(strings.NewReader(`MemTotal:       32768000 kB
MemFree:         1000000 kB
MemAvailable:   24000000 kB
Buffers:          100000 kB
HugePages_Total:       0
`))
	require.NoError(t, err)
	require.Equal(t, uint64(32768000*1024), info.Total)
	require.Equal(t, uint64(24000000*1024), info.Available)

	for _, bad := range []string{"", "MemTotal: 10 kB\n", "MemAvailable: x kB\nMemTotal: 1 kB\n", "garbage"} {
		_, err := parseMeminfo(strings.NewReader(bad))
		require.Error(t, err, "%q", bad)
	}
}

func TestCgroupV2(t *testing.T) {
	dir := t.TempDir()
	_, _, ok := cgroupV2(dir)
	require.False(t, ok, "no files: no limit")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "memory.max"), []byte("max\n"), 0o644))
	_, _, ok = cgroupV2(dir)
	require.False(t, ok, "max: no limit")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "memory.max"), []byte("8589934592\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "memory.current"), []byte("1073741824\n"), 0o644))
	limit, used, ok := cgroupV2(dir)
	require.True(t, ok)
	require.Equal(t, uint64(8<<30), limit)
	require.Equal(t, uint64(1<<30), used)
}
