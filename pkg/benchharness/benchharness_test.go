package benchharness_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/benchharness"
	"github.com/stretchr/testify/require"
)

func TestLayers(t *testing.T) {
	t.Setenv("MACH_BENCH_LAYERS", "")
	require.Equal(t, 6, benchharness.Layers(t, 6))
	t.Setenv("MACH_BENCH_LAYERS", "2")
	require.Equal(t, 2, benchharness.Layers(t, 6))
}

func TestPrompt(t *testing.T) {
	p := benchharness.Prompt(512, 100)
	require.Len(t, p, 512)
	require.Equal(t, []int32{13, 32, 51}, p[:3], "(i·7919 + 13) mod vocab, as the benchmarks always used")
	for _, id := range p {
		require.True(t, id >= 0 && id < 100)
	}
	require.Equal(t, p, benchharness.Prompt(512, 100))
}
