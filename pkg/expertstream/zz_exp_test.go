package expertstream_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/expertstream"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/qwen3moe"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/moe"
	"github.com/maniac-ai/mach/pkg/tokenizer"
	"github.com/stretchr/testify/require"
)

func TestZZExpTrace(t *testing.T) {
	if os.Getenv("ZZEXP") == "" {
		t.Skip()
	}
	dir := "../../models/default"
	b := cpu.New(cpu.Options{})
	defer b.Close()
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	w, err := model.OpenWeights(dir, cfg, b)
	require.NoError(t, err)
	layers := map[int][]*moe.Expert{}
	var idx []int
	for _, l := range cfg.MoELayers() {
		es, err := moe.BindExperts(w, fmt.Sprintf("model.layers.%d.mlp.", l), cfg.NumExperts, cfg.HiddenSize, cfg.MoEIntermediateSize)
		require.NoError(t, err)
		layers[l] = es
		idx = append(idx, l)
	}
	rec := expertstream.NewRecorder(moe.NewResident(layers), idx)
	m, err := qwen3moe.Load(t.Context(), dir, cfg, b, qwen3moe.LoadOptions{Store: rec})
	require.NoError(t, err)
	tok, err := tokenizer.Load(dir)
	require.NoError(t, err)
	text, _ := os.ReadFile("../../README.md")
	ids := tok.Encode(string(text), false)
	if len(ids) > 4000 { ids = ids[:4000] }
	for off := 0; off < len(ids); off += 1000 {
		end := min(off+1000, len(ids))
		c, err := m.NewCache(1000, kernels.F32)
		require.NoError(t, err)
		for _, id := range ids[off:end] {
			_, err := m.Forward(t.Context(), &model.Batch{Seqs: []model.Seq{{Tokens: []int32{id}, Cache: c, Logits: model.NoLogits}}})
			require.NoError(t, err)
		}
		c.Release()
	}
	tr := rec.Trace()
	t.Logf("%d steps", tr.Steps())
	for _, slots := range []int{24, 32, 48, 64} {
		for _, p := range expertstream.Policies() {
			for _, hl := range []float64{4, 8, 16, 32} {
				if p != expertstream.LRFU && hl != 8 { continue }
				r, err := expertstream.Simulate(tr, expertstream.SimOptions{Policy: p, Slots: slots, HalfLife: hl})
				require.NoError(t, err)
				rs, err := expertstream.Simulate(tr, expertstream.SimOptions{Policy: p, Slots: slots, HalfLife: hl, Speculate: true})
				require.NoError(t, err)
				t.Logf("slots %d %-9s hl %2.0f: hit %.3f   +spec %.3f (reads/req %.3f vs %.3f, spec %d used %d)", slots, p, hl, r.HitRate(), rs.HitRate(), float64(r.Reads())/float64(r.Requests), float64(rs.Reads())/float64(rs.Requests), rs.SpecReads, rs.SpecHits)
			}
		}
	}
}
