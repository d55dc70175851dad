package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	require.NoError(t, WriteFile(p, []byte("one"), 0o644))
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "one", string(got))

	// A failing fill leaves the old content and no temporary file.
	boom := errors.New("boom")
	err = Write(p, 0o644, func(w io.Writer) error {
		_, _ = w.Write([]byte("partial"))
		return boom
	})
	require.ErrorIs(t, err, boom)
	got, err = os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "one", string(got))
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 1)
}
