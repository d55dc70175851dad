package hostmem

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRead(t *testing.T) {
	info, err := Read()
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		require.ErrorIs(t, err, ErrUnsupported)
		return
	}
	require.NoError(t, err)
	require.Positive(t, info.Total)
	require.Positive(t, info.Available)
	require.LessOrEqual(t, info.Available, info.Total)
	require.NotEmpty(t, info.Source)
}
