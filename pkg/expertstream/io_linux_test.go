package expertstream

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A direct read the file system rejects (here: a buffer not aligned for
// O_DIRECT) switches the file to buffered reads and still succeeds.
func TestDirectReadFallsBack(t *testing.T) {
	p := filepath.Join(t.TempDir(), "layer_00.bin")
	want := make([]byte, 3*4096)
	for i := range want {
		want[i] = byte(i * 7)
	}
	require.NoError(t, os.WriteFile(p, want, 0o644))
	f, err := openLayer(p, true)
	require.NoError(t, err)
	defer f.close()
	if !f.isDirect() {
		t.Skip("this file system refuses O_DIRECT at open; nothing to fall back from")
	}
	a, err := newArena(2 * 4096)
	require.NoError(t, err)
	defer a.free()
	aligned := a.bytes()[:4096]
	require.NoError(t, f.readAt(aligned, 4096))
	require.Equal(t, want[4096:8192], aligned)
	require.True(t, f.isDirect())

	odd := a.bytes()[1 : 1+4096]
	require.NoError(t, f.readAt(odd, 8192))
	require.Equal(t, want[8192:], odd)
	require.False(t, f.isDirect(), "misaligned direct read fell back to buffered")

	err = f.readAt(aligned, 3*4096)
	require.ErrorIs(t, err, errTruncated)
}
