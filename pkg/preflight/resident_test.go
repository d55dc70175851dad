package preflight_test

import (
	"testing"

	"github.com/maniac-ai/mach/pkg/capability"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/preflight"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/stretchr/testify/require"
)

// With the resident expert store, a per-expert or engine-layout checkpoint
// is servable without a sidecar, a stacked one through resident_stacked
// (the resident store binds stacked tensors in place), and a config-only
// checkpoint stays undecided.
func TestResidentExperts(t *testing.T) {
	b := preflight.ThisBuild(registry.Default())
	arch, _ := b.Registry.Lookup("qwen3_moe")
	cfg := loadConfig(t, "qwen3_moe")
	bf16 := checkpoint.Quant{Mode: "bf16", Bits: 16, Source: "tensors"}
	tests := []struct {
		name   string
		in     *checkpoint.Inspection
		want   capability.Status
		reason string
	}{
		{"per-expert", inspection(cfg, checkpoint.PerExpert, bf16), capability.OK, "routed experts resident in memory"},
		{"engine", inspection(cfg, checkpoint.Engine, bf16), capability.OK, "routed experts resident in memory"},
		{"stacked", inspection(cfg, checkpoint.Stacked, bf16), capability.OK, "registered architecture"},
		{"config only", checkpoint.InspectConfig("/cache", cfg, nil, ""), capability.OK, "depends on the checkpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := b.Gate(capability.OpenAIHTTP, arch, tc.in)
			require.Equal(t, tc.want, r.Status, r.Reason)
			require.Contains(t, r.Reason, tc.reason)
		})
	}
	off := b
	off.Features.ResidentExperts = false
	r := off.Gate(capability.OpenAIHTTP, arch, inspection(cfg, checkpoint.PerExpert, bf16))
	require.Equal(t, capability.NeedsArtifact, r.Status, "without it a per-expert checkpoint needs a sidecar to stream")
}
