package prune_test

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/fixture"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/prune"
	"github.com/maniac-ai/mach/pkg/pruneplan"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/stretchr/testify/require"
)

// source is an opened checkpoint for the checks.
type source struct {
	dir string
	cfg *modelconfig.Config
	set *safetensors.Set
	w   *model.Weights
}

func open(t *testing.T, dir string) *source {
	t.Helper()
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	set, err := safetensors.OpenSet(dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = set.Close() })
	b := cpu.New(cpu.Options{Threads: 1})
	t.Cleanup(func() { _ = b.Close() })
	w, err := model.OpenWeights(dir, cfg, b)
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	return &source{dir: dir, cfg: cfg, set: set, w: w}
}

func (s *source) bytes(t *testing.T, name string) ([]byte, safetensors.TensorInfo) {
	t.Helper()
	b, info, err := s.set.Bytes(name)
	require.NoError(t, err, name)
	return b, info
}

// expert returns the dequantized [out, in] matrix of one projection of
// expert e in layer l, read from whatever layout the checkpoint has with
// the engine's own decoder, and the MoE block prefix it lives under.
func (s *source) expert(t *testing.T, l, e int, p checkpoint.Proj) (vals []float32, rows int, block string) {
	t.Helper()
	for _, name := range s.set.Names() {
		kind, et := checkpoint.Classify(s.cfg.ModelType, name)
		if kind != checkpoint.RoutedExpert || et.MTP || et.Layer != l || (et.Part != checkpoint.Weight && et.Part != checkpoint.Blocks) {
			continue
		}
		if !et.Stacked() && et.Expert != e {
			continue
		}
		fused := et.Proj == checkpoint.GateUp && (p == checkpoint.Gate || p == checkpoint.Up)
		if et.Proj != p && !fused {
			continue
		}
		block, _ = checkpoint.BlockPrefix(s.cfg.ModelType, name)
		tn, err := s.w.Matrix(et.Module)
		require.NoError(t, err, name)
		m := tn.M
		if et.Stacked() {
			m = tn.Slice(e)
		}
		v, r, c := m.Dequantize(), m.Rows, m.Cols
		if et.Transposed { // stored [in, out]
			tr := make([]float32, len(v))
			for i := range r {
				for j := range c {
					tr[j*r+i] = v[i*c+j]
				}
			}
			v, r, c = tr, c, r
		}
		if !fused {
			return v, r, block
		}
		var sel []float32
		for i := range r {
			gateRow := i < r/2
			if et.Interleaved {
				gateRow = i%2 == 0
			}
			if gateRow == (p == checkpoint.Gate) {
				sel = append(sel, v[i*c:(i+1)*c]...)
			}
		}
		return sel, r / 2, block
	}
	t.Fatalf("%s: no %s weight of layer %d expert %d", s.dir, p, l, e)
	return nil, 0, ""
}

// expertBias returns expert e's bias of projection p (gpt-oss), or nil.
func (s *source) expertBias(t *testing.T, l, e int, p checkpoint.Proj) []float32 {
	t.Helper()
	for _, name := range s.set.Names() {
		kind, et := checkpoint.Classify(s.cfg.ModelType, name)
		if kind != checkpoint.RoutedExpert || et.MTP || et.Layer != l || et.Part != checkpoint.Bias {
			continue
		}
		fused := et.Proj == checkpoint.GateUp && (p == checkpoint.Gate || p == checkpoint.Up)
		if et.Proj != p && !fused || !et.Stacked() && et.Expert != e {
			continue
		}
		raw, info := s.bytes(t, name)
		v := floats(t, info.DType, raw)
		if et.Stacked() {
			n := len(v) / int(info.Shape[0])
			v = v[e*n : (e+1)*n]
		}
		if !fused {
			return v
		}
		var sel []float32
		for i := range v {
			gate := i < len(v)/2
			if et.Interleaved {
				gate = i%2 == 0
			}
			if gate == (p == checkpoint.Gate) {
				sel = append(sel, v[i])
			}
		}
		return sel
	}
	return nil
}

func floats(t *testing.T, dt safetensors.DType, raw []byte) []float32 {
	t.Helper()
	switch dt {
	case safetensors.F32:
		out := make([]float32, len(raw)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return out
	case safetensors.BF16:
		out := make([]float32, len(raw)/2)
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
		}
		return out
	}
	t.Fatalf("dtype %s", dt)
	return nil
}

// layoutPlan keeps about two thirds of every layer's experts; DeepSeek's
// hash layers keep all (their table uses every expert).
func layoutPlan(cfg *modelconfig.Config, hashLayers []int) *pruneplan.Candidate {
	return candidate("two_thirds", cfg.NumExperts, cfg.MoELayers(), func(l, e int) bool {
		return slices.Contains(hashLayers, l) || e%3 != 1
	})
}

// TestLayout prunes every fixture (every architecture, layout and
// quantization) with keep-all and with a plan, and checks the output
// against the source tensor by tensor: each kept expert's projections
// decode to the source expert's values, the routers keep the kept rows,
// hash tables are remapped, every other tensor is byte-identical, and
// config.json, expert_map.json and an inspection agree.
func TestLayout(t *testing.T) {
	names, err := fixture.Names()
	require.NoError(t, err)
	require.Len(t, names, 20)
	for _, name := range names {
		for _, pruned := range []bool{false, true} {
			label := name + "/keep_all"
			if pruned {
				label = name + "/pruned"
			}
			t.Run(label, func(t *testing.T) {
				fx, err := fixture.Load(name)
				require.NoError(t, err)
				src := open(t, fx.Dir)
				var hash []int
				for _, n := range src.set.Names() {
					if rt := checkpoint.ClassifyRouter(src.cfg.ModelType, n); rt.Kind == checkpoint.RouterHash {
						hash = append(hash, rt.Layer)
					}
				}
				var c *pruneplan.Candidate
				if pruned {
					c = layoutPlan(src.cfg, hash)
				}
				out := filepath.Join(t.TempDir(), "out")
				sum, err := prune.Run(t.Context(), prune.Options{Source: fx.Dir, Output: out, Candidate: c})
				require.NoError(t, err)
				checkLayout(t, src, open(t, out), c, sum)
			})
		}
	}
}

func checkLayout(t *testing.T, src, out *source, c *pruneplan.Candidate, sum *prune.Summary) {
	mt := src.cfg.ModelType
	keep := map[int][]int{}
	for _, l := range src.cfg.MoELayers() {
		if c != nil {
			keep[l] = c.Keep[l]
		} else {
			for e := range src.cfg.NumExperts {
				keep[l] = append(keep[l], e)
			}
		}
	}
	// The inspection sees the engine layout with the new counts.
	in, err := checkpoint.Inspect(out.dir, out.cfg, checkpoint.Options{})
	require.NoError(t, err)
	require.Equal(t, checkpoint.PerExpert, in.Layout)
	most := 0
	for l, k := range keep {
		require.Equal(t, len(k), in.Experts.PerLayer[l], "layer %d", l)
		require.Equal(t, len(k), out.cfg.LayerExperts(l))
		most = max(most, len(k))
	}
	require.Equal(t, most, out.cfg.NumExperts)
	require.Equal(t, most, sum.Experts)
	require.Equal(t, in.Experts.Bytes, sum.ExpertBytesAfter)

	// config.json: only the expert count (and per-layer counts) changed.
	want := *src.cfg
	got := *out.cfg
	require.Equal(t, src.cfg.Quant != nil, out.cfg.Quant != nil)
	for _, x := range []*modelconfig.Config{&want, &got} {
		x.Path, x.Raw, x.Text, x.Quant, x.NumExperts, x.ExpertsPerLayer = "", nil, nil, nil, 0, nil
	}
	require.Equal(t, want, got)

	// Every kept expert decodes to its source expert.
	projs := []checkpoint.Proj{checkpoint.Gate, checkpoint.Up, checkpoint.Down}
	for l, k := range keep {
		for newID, e := range k {
			for _, p := range projs {
				wantV, rows, block := src.expert(t, l, e, p)
				module := strings.TrimSuffix(checkpoint.ExpertName(mt, block, newID, p, checkpoint.Weight), ".weight")
				tn, err := out.w.Matrix(module)
				require.NoError(t, err)
				require.Equal(t, []int64{int64(rows), int64(len(wantV) / rows)}, tn.Shape, module)
				require.Equal(t, wantV, tn.M.Dequantize(), "%s: layer %d source expert %d %s", module, l, e, p)
				if b := src.expertBias(t, l, e, p); b != nil {
					raw, info := out.bytes(t, module+".bias")
					require.Equal(t, b, floats(t, info.DType, raw), "%s.bias", module)
				}
			}
		}
	}
	// Routers keep the kept rows; hash tables map to new ids; the rest is
	// byte-identical.
	for _, name := range src.set.Names() {
		kind, _ := checkpoint.Classify(mt, name)
		if kind == checkpoint.RoutedExpert {
			continue
		}
		raw, info := src.bytes(t, name)
		got, ginfo := out.bytes(t, name)
		require.Equal(t, info.DType, ginfo.DType, name)
		rt := checkpoint.ClassifyRouter(mt, name)
		switch {
		case rt.Kind == checkpoint.RouterRows && !rt.MTP:
			k := keep[rt.Layer]
			row := len(raw) / int(info.Shape[0])
			require.Equal(t, append([]int64{int64(len(k))}, info.Shape[1:]...), ginfo.Shape, name)
			for i, e := range k {
				require.Equal(t, raw[e*row:(e+1)*row], got[i*row:(i+1)*row], "%s row %d (source expert %d)", name, i, e)
			}
		case rt.Kind == checkpoint.RouterHash:
			require.Equal(t, safetensors.I64, info.DType)
			newID := map[int64]int64{}
			for i, e := range keep[rt.Layer] {
				newID[int64(e)] = int64(i)
			}
			for i := 0; i < len(raw); i += 8 {
				v := int64(binary.LittleEndian.Uint64(raw[i:]))
				require.Equal(t, newID[v], int64(binary.LittleEndian.Uint64(got[i:])), name)
			}
		default:
			require.Equal(t, info.Shape, ginfo.Shape, name)
			require.Equal(t, raw, got, name)
		}
	}
	// expert_map.json records the kept source ids.
	em, err := prune.ReadExpertMap(out.dir)
	require.NoError(t, err)
	require.Equal(t, mt, em.ModelType)
	require.Equal(t, src.cfg.NumExperts, em.SourceNumExperts)
	require.Len(t, em.Layers, len(keep))
	for l, k := range keep {
		require.Equal(t, k, em.Layers[strconv.Itoa(l)])
	}
	if c != nil {
		require.Equal(t, c.ID, em.CandidateID)
	}
}
