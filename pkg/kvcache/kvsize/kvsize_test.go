package kvsize

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompressed(t *testing.T) {
	// DeepSeek-V4-Flash's three layer kinds: sliding only, CSA (ratio 4,
	// overlap, indexer 128), HCA (ratio 128).
	sliding := CompressedLayer{HeadDim: 512, Window: 128}
	csa := CompressedLayer{HeadDim: 512, Window: 128, Ratio: 4, Overlap: true, IndexDim: 128}
	hca := CompressedLayer{HeadDim: 512, Window: 128, Ratio: 128}
	for _, tc := range []struct {
		name   string
		layers []CompressedLayer
		tokens int
		want   int64
	}{
		{"empty", []CompressedLayer{csa}, 0, 0},
		{"sliding short", []CompressedLayer{sliding}, 10, 10 * 512 * 2},
		{"sliding long", []CompressedLayer{sliding}, 100000, 128 * 512 * 2},
		{"csa 1000", []CompressedLayer{csa}, 1000,
			128*512*2 + 250*512*2 + 250*128*4 + 7*(2*2*512)*4 + 7*(4*128)*4},
		{"hca 1000", []CompressedLayer{hca}, 1000,
			128*512*2 + 7*512*2 + 127*(2*512)*4},
		{"hca under a window", []CompressedLayer{hca}, 100, 100*512*2 + 100*(2*512)*4},
	} {
		require.Equal(t, tc.want, Compressed(tc.layers, tc.tokens, 2), tc.name)
	}
	require.Equal(t, 7, csa.RawKeep())
	require.Equal(t, 127, hca.RawKeep())
	require.Equal(t, 0, sliding.RawKeep())
	require.Equal(t, 7, csa.IndexRawKeep())
	require.Equal(t, 0, hca.IndexRawKeep())
}
