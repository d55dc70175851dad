package procmem

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadSplitsFileAndAnon(t *testing.T) {
	if runtime.GOOS != "linux" {
		_, err := Read()
		require.True(t, errors.Is(err, ErrUnsupported))
		t.Skip("the split is Linux-only")
	}
	var p Peak
	before, err := p.Sample()
	require.NoError(t, err)
	require.Positive(t, before.RSS)
	require.GreaterOrEqual(t, before.RSS, before.Anon)

	// Touching 32 MiB of a mapped file raises the file-backed part.
	path := filepath.Join(t.TempDir(), "f")
	const n = 32 << 20
	require.NoError(t, os.WriteFile(path, make([]byte, n), 0o600))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ, syscall.MAP_SHARED)
	require.NoError(t, err)
	defer syscall.Munmap(data)
	var sum byte
	for i := 0; i < n; i += 4096 {
		sum += data[i]
	}
	require.Zero(t, sum)
	after, err := p.Sample()
	require.NoError(t, err)
	require.Greater(t, after.File-before.File, int64(n/2), "file-backed RSS grows by the mapped pages touched")
	m, ok := p.Max()
	require.True(t, ok)
	require.GreaterOrEqual(t, m.File, after.File)
}
