package defaultmodel_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/maniac-ai/mach/kernels"
	"github.com/maniac-ai/mach/kernels/cpu"
	"github.com/maniac-ai/mach/pkg/chat"
	"github.com/maniac-ai/mach/pkg/engine"
	"github.com/maniac-ai/mach/pkg/engine/enginetest"
	"github.com/maniac-ai/mach/pkg/model"
	"github.com/maniac-ai/mach/pkg/model/archs"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/tokenizer"
	"github.com/stretchr/testify/require"
)

// reference is testdata/default-model/reference.json: what transformers
// computed on models/default (tools/train-default/train.py, stage
// reference), in float32 on the CPU from the stored MLX 8-bit weights
// dequantized to float32.
type reference struct {
	Format string `json:"format"`
	Model  struct {
		Dir string `json:"dir"`
	} `json:"model"`
	Perplexity struct {
		Definition string  `json:"definition"`
		Window     int     `json:"window"`
		NumWindows int     `json:"num_windows"`
		TotalNLL   float64 `json:"total_nll"`
		TotalCount int     `json:"total_count"`
		PPL        float64 `json:"ppl"`
		Windows    []struct {
			Doc    string  `json:"doc"`
			Start  int     `json:"start"`
			IDs    []int32 `json:"ids"`
			NLLSum float64 `json:"nll_sum"`
			Count  int     `json:"count"`
		} `json:"windows"`
		Documents []struct {
			ID        string `json:"id"`
			Text      string `json:"text"`
			NumTokens int    `json:"num_tokens"`
		} `json:"documents"`
	} `json:"perplexity"`
	Greedy []struct {
		Name         string         `json:"name"`
		PromptText   string         `json:"prompt_text"`
		Messages     []chat.Message `json:"messages"`
		PromptIDs    []int32        `json:"prompt_ids"`
		OutputIDs    []int32        `json:"output_ids"`
		OutputText   string         `json:"output_text"`
		MaxNewTokens int            `json:"max_new_tokens"`
		StoppedOnEOS bool           `json:"stopped_on_eos"`
		MinMargin    float64        `json:"min_margin"`
	} `json:"greedy"`
}

// repoRoot is the repository root (two levels up from this package).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	return root
}

func loadReference(t testing.TB) (*reference, string) {
	t.Helper()
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "testdata", "default-model", "reference.json"))
	require.NoError(t, err)
	var r reference
	require.NoError(t, json.Unmarshal(b, &r))
	require.Equal(t, "mach-default-reference-v1", r.Format)
	require.Len(t, r.Perplexity.Windows, r.Perplexity.NumWindows)
	require.Len(t, r.Greedy, 3)
	return &r, filepath.Join(root, filepath.FromSlash(r.Model.Dir))
}

// TestTokenizerParity: the tokenizer cuts the held-out documents into the
// very ids transformers scored (so the perplexity slice is reproducible from
// text), and the greedy prompts encode to the reference's prompt ids.
func TestTokenizerParity(t *testing.T) {
	ref, dir := loadReference(t)
	tok, err := tokenizer.Load(dir)
	require.NoError(t, err)
	docs := map[string][]int32{}
	for _, d := range ref.Perplexity.Documents {
		ids := tok.Encode(d.Text, true)
		require.Len(t, ids, d.NumTokens, "document %s", d.ID)
		docs[d.ID] = ids
	}
	for i, w := range ref.Perplexity.Windows {
		ids, ok := docs[w.Doc]
		require.True(t, ok, "window %d: document %s", i, w.Doc)
		end := min(w.Start+ref.Perplexity.Window, len(ids))
		require.Equal(t, w.IDs, ids[w.Start:end], "window %d (%s at %d)", i, w.Doc, w.Start)
	}
	for _, g := range ref.Greedy {
		require.Equal(t, g.PromptIDs, tok.Encode(g.PromptText, true), "prompt %s", g.Name)
	}
}

// TestPerplexity: mach's perplexity on the held-out slice is within 0.5% of
// transformers' on the same checkpoint. Every window is scored as its own
// sequence from position 0 with every position's logits in float32; the
// windows go through the model several at a time as one ragged batch, the
// way batched prefill runs.
func TestPerplexity(t *testing.T) {
	ref, dir := loadReference(t)
	cfg, err := modelconfig.Load(dir)
	require.NoError(t, err)
	b := cpu.New(cpu.Options{})
	defer b.Close()
	m, err := archs.Loaders()[cfg.ModelType](t.Context(), dir, cfg, b)
	require.NoError(t, err)
	defer m.Close()
	vocab := m.Info().Vocab

	const perBatch = 1
	var totalNLL float64
	var totalCount int
	worst := 0.0
	start := time.Now()
	windows := ref.Perplexity.Windows
	for lo := 0; lo < len(windows); lo += perBatch {
		hi := min(lo+perBatch, len(windows))
		batch := &model.Batch{}
		for _, w := range windows[lo:hi] {
			c, err := m.NewCache(len(w.IDs), kernels.F32)
			require.NoError(t, err)
			defer c.Release()
			batch.Seqs = append(batch.Seqs, model.Seq{Tokens: w.IDs, Cache: c, Logits: model.AllLogits})
		}
		out, err := m.Forward(t.Context(), batch)
		require.NoError(t, err)
		// The log-softmax over the vocabulary costs a sixth of the model's
		// time here; the windows of a batch are scored in parallel.
		nlls := make([]float64, hi-lo)
		var wg sync.WaitGroup
		for i, w := range windows[lo:hi] {
			wg.Go(func() { nlls[i] = score(out.Logits[i], w.IDs, vocab) })
		}
		wg.Wait()
		for i, w := range windows[lo:hi] {
			require.Equal(t, w.Count, len(w.IDs)-1)
			worst = math.Max(worst, math.Abs(nlls[i]-w.NLLSum)/w.NLLSum)
			totalNLL += nlls[i]
			totalCount += w.Count
		}
	}
	require.Equal(t, ref.Perplexity.TotalCount, totalCount)
	ppl := math.Exp(totalNLL / float64(totalCount))
	rel := math.Abs(ppl-ref.Perplexity.PPL) / ref.Perplexity.PPL
	t.Logf("perplexity over %d windows (%d scored tokens): mach %.5f, transformers %.5f, relative difference %.3g; worst window NLL relative difference %.3g; %.1f s",
		len(windows), totalCount, ppl, ref.Perplexity.PPL, rel, worst, time.Since(start).Seconds())
	require.LessOrEqual(t, rel, 0.005, "perplexity: mach %.5f, transformers %.5f", ppl, ref.Perplexity.PPL)
}

// score returns the summed negative log-likelihood of ids[1:] given the
// logits of the positions before them (log-softmax in float64).
func score(logits []float32, ids []int32, vocab int) float64 {
	var nll float64
	for t := 1; t < len(ids); t++ {
		row := logits[(t-1)*vocab : t*vocab]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v - mx))
		}
		nll += math.Log(sum) - float64(row[ids[t]]-mx)
	}
	return nll
}

// TestGreedy: greedy decoding of the three fixed prompts through the engine
// (tokenizer, chat template, prefill, cached decode, detokenizer) gives
// transformers' ids and text exactly.
func TestGreedy(t *testing.T) {
	ref, dir := loadReference(t)
	e, err := engine.Load(t.Context(), dir, engine.Options{Loaders: archs.Loaders(), CacheType: kernels.F32})
	require.NoError(t, err)
	defer e.Close()
	for _, g := range ref.Greedy {
		t.Run(g.Name, func(t *testing.T) {
			req := &engine.Request{MaxTokens: g.MaxNewTokens}
			if g.Messages != nil {
				req.Messages = g.Messages
			} else {
				req.Prompt = g.PromptText
			}
			_, sum := enginetest.Generate(t, e, req)
			require.Equal(t, g.PromptIDs, sum.PromptTokens, "prompt ids")
			want := g.OutputIDs
			if g.StoppedOnEOS {
				// The engine leaves the end-of-sequence id out.
				want = want[:len(want)-1]
			}
			require.Equal(t, want, sum.Tokens, "greedy ids (the reference's smallest top-1/top-2 margin is %.3g)", g.MinMargin)
			require.Equal(t, g.OutputText, sum.Text)
		})
	}
}
