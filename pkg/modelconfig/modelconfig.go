// Package modelconfig turns a checkpoint's config.json into one normalized
// Config: it unwraps text_config (qwen3_5_moe, gemma4), accepts the legacy
// and per-version key spellings of every architecture mach knows, derives
// per-layer attention kinds, and keeps the quantization block and the raw
// JSON so each model package can decode its own options.
//
// The parser treats config.json as untrusted: the size is bounded, every
// integer is range-checked, and a malformed field yields an error naming the
// file, the field and what was found, never a panic.
package modelconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/maniac-ai/mach/pkg/fault"
)

// FileName is the config file of a checkpoint directory.
const FileName = "config.json"

// MaxSize bounds config.json. Real configs are a few KiB; MLX configs with
// per-module quantization overrides reach a few hundred KiB.
const MaxSize = 16 << 20

// maxDim bounds every integer field, so arithmetic on products of a few of
// them stays far from overflow in float64 and int64.
const maxDim = 1 << 31

// MaxLayers bounds num_hidden_layers (real models have a few hundred at
// most); per-layer tables are allocated from it.
const MaxLayers = 1 << 16

// ErrInvalid is wrapped by every error about a malformed config.json.
var ErrInvalid = errors.New("invalid config.json")

// Attention kinds of a layer, as transformers names them in layer_types.
const (
	FullAttention       = "full_attention"
	SlidingAttention    = "sliding_attention"
	LinearAttention     = "linear_attention"             // Gated DeltaNet (qwen3_5_moe)
	CompressedSparse    = "compressed_sparse_attention"  // deepseek_v4 CSA (ratio 4)
	HeavilyCompressed   = "heavily_compressed_attention" // deepseek_v4 HCA (ratio 128)
	defaultCSARatio     = 4
	defaultHCARatio     = 128
	defaultGDNInterval  = 4
	defaultGemmaPattern = 6
)

// Config is a normalized config.json. Zero means the key was absent.
type Config struct {
	// Path is the file the config came from ("" when parsed from bytes);
	// errors about the config name it.
	Path string
	// ModelType is the top-level model_type: the registry key.
	ModelType string
	// TextModelType is text_config.model_type of a wrapped config.
	TextModelType string
	// Wrapped: the text model's keys came from text_config.
	Wrapped       bool
	Architectures []string
	// DType is torch_dtype / dtype ("bfloat16", "float16", "float32").
	DType string

	HiddenSize            int
	NumLayers             int
	NumHeads              int
	NumKVHeads            int
	HeadDim               int
	VocabSize             int
	MaxPositionEmbeddings int
	TieWordEmbeddings     bool

	// IntermediateSize is the dense MLP width (gemma4 runs one beside the
	// experts); MoEIntermediateSize the routed expert width (gpt_oss, which
	// has no dense MLP, names it intermediate_size).
	IntermediateSize             int
	MoEIntermediateSize          int
	SharedExpertIntermediateSize int
	NumExperts                   int
	ExpertsPerToken              int
	NumSharedExperts             int
	DecoderSparseStep            int
	MLPOnlyLayers                []int
	FirstKDenseReplace           int
	EnableMoEBlock               bool

	// ExpertsPerLayer is num_experts_per_layer, which mach-prune writes
	// when a plan keeps different numbers of experts in different layers:
	// one count per layer (0 on dense layers); NumExperts is then their
	// maximum. Nil when every MoE layer has NumExperts. Use LayerExperts.
	ExpertsPerLayer []int

	// LayerTypes holds one attention kind per layer (see the constants),
	// from layer_types or derived from the architecture's pattern keys.
	LayerTypes    []string
	SlidingWindow int

	// gemma4 full-attention layers.
	GlobalHeadDim    int
	NumGlobalKVHeads int
	AttentionKEqV    bool
	perLayer         map[int]layerOverride

	// qwen3_5_moe Gated DeltaNet layers.
	LinearNumKeyHeads   int
	LinearNumValueHeads int
	LinearKeyHeadDim    int
	LinearValueHeadDim  int
	LinearConvKernelDim int

	// deepseek_v4: per-layer compression ratio (0 = sliding only).
	CompressRatios []int
	IndexHeadDim   int
	QLoraRank      int
	OLoraRank      int
	OGroups        int

	// MTP heads (qwen3_5_moe mtp_num_hidden_layers, deepseek
	// num_nextn_predict_layers).
	MTPLayers int

	// Quant is the top-level quantization / quantization_config block (or
	// the text_config one); nil when the checkpoint is not quantized.
	Quant *Quantization

	// Raw is the whole config.json; Text is the object the text keys came
	// from (text_config when wrapped, else the same as Raw). Model packages
	// decode their own options from Text.
	Raw  json.RawMessage
	Text json.RawMessage
}

type layerOverride struct {
	HeadDim    int
	NumKVHeads int
}

// Load reads and normalizes dir/config.json.
func Load(dir string) (*Config, error) {
	return ReadFile(filepath.Join(dir, FileName))
}

// ReadFile reads and normalizes a config file. Errors are classified
// fault.ErrIO: the file is missing, unreadable or malformed.
func ReadFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fault.Mark(fmt.Errorf("%s: not found; a checkpoint directory must contain config.json", path), fault.ErrIO)
		}
		return nil, fault.Mark(fmt.Errorf("open %s: %w", path, err), fault.ErrIO)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("read %s: %w", path, err), fault.ErrIO)
	}
	if len(data) > MaxSize {
		return nil, fault.Mark(fmt.Errorf("%s: %w: larger than %d bytes", path, ErrInvalid, MaxSize), fault.ErrIO)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// obj is a JSON object whose values are decoded on demand, remembering the
// key path for error messages.
type obj struct {
	m    map[string]json.RawMessage
	path string // "" for the top level, "text_config." inside it
}

func invalid(format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...)), fault.ErrIO)
}

func parseObject(data []byte, path string) (obj, error) {
	d := bytes.TrimSpace(data)
	if len(d) == 0 || d[0] != '{' {
		where := "the file"
		if path != "" {
			where = path[:len(path)-1]
		}
		return obj{}, invalid("%s is not a JSON object", where)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(d, &m); err != nil {
		return obj{}, invalid("%v", err)
	}
	return obj{m: m, path: path}, nil
}

func (o obj) has(key string) bool {
	v, ok := o.m[key]
	return ok && !isNull(v)
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// first returns the first key present (and not null) among keys.
func (o obj) first(keys ...string) (string, json.RawMessage, bool) {
	for _, k := range keys {
		if v, ok := o.m[k]; ok && !isNull(v) {
			return k, v, true
		}
	}
	return "", nil, false
}

// integer decodes the first present key as a non-negative integer below
// maxDim. Integral floats (64.0) are accepted; config writers produce them.
func (o obj) integer(keys ...string) (int, error) {
	k, v, ok := o.first(keys...)
	if !ok {
		return 0, nil
	}
	return decodeInt(v, o.path+k)
}

func decodeInt(v json.RawMessage, field string) (int, error) {
	var n json.Number
	// json.Number also accepts a quoted number; config keys are numbers.
	if t := bytes.TrimSpace(v); len(t) == 0 || t[0] == '"' || json.Unmarshal(t, &n) != nil {
		return 0, invalid("%s: want a non-negative integer, got %s", field, abbreviate(v))
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || math.IsNaN(f) || f != math.Trunc(f) || f < 0 || f >= maxDim {
		return 0, invalid("%s: want a non-negative integer below %d, got %s", field, maxDim, n)
	}
	return int(f), nil
}

func (o obj) str(keys ...string) (string, error) {
	k, v, ok := o.first(keys...)
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", invalid("%s: want a string, got %s", o.path+k, abbreviate(v))
	}
	return s, nil
}

func (o obj) boolean(def bool, keys ...string) (bool, error) {
	k, v, ok := o.first(keys...)
	if !ok {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, invalid("%s: want true or false, got %s", o.path+k, abbreviate(v))
	}
	return b, nil
}

func (o obj) strings(key string) ([]string, error) {
	v, ok := o.m[key]
	if !ok || isNull(v) {
		return nil, nil
	}
	var s []string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, invalid("%s: want a list of strings, got %s", o.path+key, abbreviate(v))
	}
	return s, nil
}

func (o obj) ints(key string) ([]int, error) {
	v, ok := o.m[key]
	if !ok || isNull(v) {
		return nil, nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		return nil, invalid("%s: want a list of integers, got %s", o.path+key, abbreviate(v))
	}
	out := make([]int, len(raw))
	for i, r := range raw {
		n, err := decodeInt(r, fmt.Sprintf("%s%s[%d]", o.path, key, i))
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

func (o obj) object(key string) (obj, bool, error) {
	v, ok := o.m[key]
	if !ok || isNull(v) {
		return obj{}, false, nil
	}
	sub, err := parseObject(v, o.path+key+".")
	if err != nil {
		return obj{}, false, err
	}
	return sub, true, nil
}

func abbreviate(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// Parse normalizes config.json bytes.
func Parse(data []byte) (*Config, error) {
	top, err := parseObject(data, "")
	if err != nil {
		return nil, err
	}
	c := &Config{Raw: json.RawMessage(bytes.TrimSpace(data))}
	if c.ModelType, err = top.str("model_type"); err != nil {
		return nil, err
	}
	if c.Architectures, err = top.strings("architectures"); err != nil {
		return nil, err
	}
	text := top
	c.Text = c.Raw
	if tc, ok, err := top.object("text_config"); err != nil {
		return nil, err
	} else if ok {
		text, c.Wrapped, c.Text = tc, true, top.m["text_config"]
		if c.TextModelType, err = tc.str("model_type"); err != nil {
			return nil, err
		}
	}
	if c.DType, err = text.str("torch_dtype", "dtype"); err != nil {
		return nil, err
	}
	if c.DType == "" {
		if c.DType, err = top.str("torch_dtype", "dtype"); err != nil {
			return nil, err
		}
	}
	if err := c.readDims(text); err != nil {
		return nil, err
	}
	if err := c.readLayers(text); err != nil {
		return nil, err
	}
	if c.Quant, err = readQuantization(top, text); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) readDims(t obj) error {
	type field struct {
		dst  *int
		keys []string
	}
	fields := []field{
		{&c.HiddenSize, []string{"hidden_size", "d_model", "dim"}},
		{&c.NumLayers, []string{"num_hidden_layers", "n_layers", "num_layers"}},
		{&c.NumHeads, []string{"num_attention_heads", "n_heads"}},
		{&c.NumKVHeads, []string{"num_key_value_heads", "n_kv_heads"}},
		{&c.HeadDim, []string{"head_dim"}},
		{&c.VocabSize, []string{"vocab_size"}},
		{&c.MaxPositionEmbeddings, []string{"max_position_embeddings", "max_seq_len"}},
		{&c.IntermediateSize, []string{"intermediate_size"}},
		{&c.MoEIntermediateSize, []string{"moe_intermediate_size"}},
		{&c.SharedExpertIntermediateSize, []string{"shared_expert_intermediate_size"}},
		// transformers 5.x writes num_local_experts for qwen3_moe; gpt-oss
		// always did; deepseek says n_routed_experts.
		{&c.NumExperts, []string{"num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"}},
		{&c.ExpertsPerToken, []string{"num_experts_per_tok", "experts_per_token", "top_k_experts", "moe_topk", "n_activated_experts"}},
		{&c.NumSharedExperts, []string{"n_shared_experts", "num_shared_experts"}},
		{&c.DecoderSparseStep, []string{"decoder_sparse_step"}},
		{&c.FirstKDenseReplace, []string{"first_k_dense_replace"}},
		{&c.SlidingWindow, []string{"sliding_window"}},
		{&c.GlobalHeadDim, []string{"global_head_dim"}},
		{&c.NumGlobalKVHeads, []string{"num_global_key_value_heads"}},
		{&c.LinearNumKeyHeads, []string{"linear_num_key_heads"}},
		{&c.LinearNumValueHeads, []string{"linear_num_value_heads"}},
		{&c.LinearKeyHeadDim, []string{"linear_key_head_dim"}},
		{&c.LinearValueHeadDim, []string{"linear_value_head_dim"}},
		{&c.LinearConvKernelDim, []string{"linear_conv_kernel_dim"}},
		{&c.IndexHeadDim, []string{"index_head_dim"}},
		{&c.QLoraRank, []string{"q_lora_rank"}},
		{&c.OLoraRank, []string{"o_lora_rank"}},
		{&c.OGroups, []string{"o_groups"}},
		{&c.MTPLayers, []string{"mtp_num_hidden_layers", "num_nextn_predict_layers"}},
	}
	for _, f := range fields {
		n, err := t.integer(f.keys...)
		if err != nil {
			return err
		}
		*f.dst = n
	}
	if c.NumLayers > MaxLayers {
		return invalid("%snum_hidden_layers %d is more than %d", t.path, c.NumLayers, MaxLayers)
	}
	var err error
	if c.MLPOnlyLayers, err = t.ints("mlp_only_layers"); err != nil {
		return err
	}
	if c.ExpertsPerLayer, err = t.ints(ExpertsPerLayerKey); err != nil {
		return err
	}
	if c.ExpertsPerLayer != nil && len(c.ExpertsPerLayer) != c.NumLayers {
		return invalid("%s%s has %d entries for %d layers (num_hidden_layers)", t.path, ExpertsPerLayerKey, len(c.ExpertsPerLayer), c.NumLayers)
	}
	if c.TieWordEmbeddings, err = t.boolean(false, "tie_word_embeddings"); err != nil {
		return err
	}
	if c.AttentionKEqV, err = t.boolean(false, "attention_k_eq_v"); err != nil {
		return err
	}
	if c.EnableMoEBlock, err = t.boolean(true, "enable_moe_block"); err != nil {
		return err
	}
	// gpt-oss has no dense MLP: its intermediate_size is the expert width.
	if c.MoEIntermediateSize == 0 && c.NumExperts > 0 && !t.has("moe_intermediate_size") && c.ModelType == "gpt_oss" {
		c.MoEIntermediateSize = c.IntermediateSize
	}
	if c.HeadDim == 0 && c.NumHeads > 0 && c.HiddenSize%c.NumHeads == 0 {
		c.HeadDim = c.HiddenSize / c.NumHeads
	}
	if c.NumKVHeads == 0 {
		c.NumKVHeads = c.NumHeads
	}
	return c.readPerLayer(t)
}

// readPerLayer reads gemma4's per_layer_config: {"3": {"head_dim": 512}}.
func (c *Config) readPerLayer(t obj) error {
	pl, ok, err := t.object("per_layer_config")
	if err != nil || !ok {
		return err
	}
	c.perLayer = map[int]layerOverride{}
	for k := range pl.m {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= maxDim {
			return invalid("%sper_layer_config: key %q is not a layer index", t.path, k)
		}
		lo, ok, err := pl.object(k)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		var o layerOverride
		if o.HeadDim, err = lo.integer("head_dim"); err != nil {
			return err
		}
		if o.NumKVHeads, err = lo.integer("num_key_value_heads"); err != nil {
			return err
		}
		c.perLayer[i] = o
	}
	return nil
}

func (c *Config) readLayers(t obj) error {
	types, err := t.strings("layer_types")
	if err != nil {
		return err
	}
	ratios, err := t.ints("compress_ratios")
	if err != nil {
		return err
	}
	n := c.NumLayers
	switch {
	case len(types) > 0:
		// deepseek lists the MTP layer too; keep the main layers.
		if len(types) < n {
			return invalid("%slayer_types has %d entries for %d layers", t.path, len(types), n)
		}
		c.LayerTypes = slices.Clone(types[:n])
	case len(ratios) > 0:
		if len(ratios) < n {
			return invalid("%scompress_ratios has %d entries for %d layers", t.path, len(ratios), n)
		}
		c.LayerTypes = make([]string, n)
		for i := range n {
			c.LayerTypes[i] = ratioKind(ratios[i])
		}
	default:
		c.LayerTypes, err = defaultLayerTypes(c, t)
		if err != nil {
			return err
		}
	}
	for i, k := range c.LayerTypes {
		switch k {
		case FullAttention, SlidingAttention, LinearAttention, CompressedSparse, HeavilyCompressed, "chunked_attention":
		default:
			return invalid("%slayer_types[%d]: unknown attention kind %q", t.path, i, k)
		}
	}
	if len(ratios) >= n && n > 0 {
		c.CompressRatios = slices.Clone(ratios[:n])
	} else if c.ModelType == "deepseek_v4" || hasKind(c.LayerTypes, CompressedSparse, HeavilyCompressed) {
		csa, hca := defaultCSARatio, defaultHCARatio
		if rates, ok, err := t.object("compress_rates"); err != nil {
			return err
		} else if ok {
			if v, err := rates.integer(CompressedSparse); err != nil {
				return err
			} else if v > 0 {
				csa = v
			}
			if v, err := rates.integer(HeavilyCompressed); err != nil {
				return err
			} else if v > 0 {
				hca = v
			}
		}
		c.CompressRatios = make([]int, n)
		for i, k := range c.LayerTypes {
			switch k {
			case CompressedSparse:
				c.CompressRatios[i] = csa
			case HeavilyCompressed:
				c.CompressRatios[i] = hca
			}
		}
	}
	return nil
}

func ratioKind(r int) string {
	switch {
	case r == 0:
		return SlidingAttention
	case r == defaultCSARatio:
		return CompressedSparse
	}
	return HeavilyCompressed
}

func hasKind(types []string, kinds ...string) bool {
	for _, t := range types {
		if slices.Contains(kinds, t) {
			return true
		}
	}
	return false
}

// defaultLayerTypes derives layer kinds the way each architecture's
// reference implementation does when layer_types is absent.
func defaultLayerTypes(c *Config, t obj) ([]string, error) {
	n := c.NumLayers
	out := make([]string, n)
	switch c.ModelType {
	case "qwen3_5_moe", "qwen3_next":
		every, err := t.integer("full_attention_interval")
		if err != nil {
			return nil, err
		}
		if every == 0 {
			every = defaultGDNInterval
		}
		for i := range out {
			out[i] = LinearAttention
			if (i+1)%every == 0 {
				out[i] = FullAttention
			}
		}
	case "gpt_oss":
		for i := range out {
			out[i] = FullAttention
			if i%2 == 0 {
				out[i] = SlidingAttention
			}
		}
	case "gemma4":
		every, err := t.integer("sliding_window_pattern")
		if err != nil {
			return nil, err
		}
		if every == 0 {
			every = defaultGemmaPattern
		}
		for i := range out {
			out[i] = SlidingAttention
			if (i+1)%every == 0 || i == n-1 {
				out[i] = FullAttention
			}
		}
	default:
		for i := range out {
			out[i] = FullAttention
		}
	}
	return out, nil
}

// IsMoELayer reports whether layer i has routed experts.
func (c *Config) IsMoELayer(i int) bool {
	if c.NumExperts == 0 || !c.EnableMoEBlock || i < 0 || i >= c.NumLayers {
		return false
	}
	if i < c.FirstKDenseReplace || slices.Contains(c.MLPOnlyLayers, i) {
		return false
	}
	step := c.DecoderSparseStep
	if step <= 1 {
		return true
	}
	return (i+1)%step == 0
}

// ExpertsPerLayerKey is the config.json key of per-layer expert counts.
const ExpertsPerLayerKey = "num_experts_per_layer"

// LayerExperts returns the number of routed experts of layer i: its
// num_experts_per_layer entry when the config has one, else NumExperts on
// MoE layers and 0 on the others.
func (c *Config) LayerExperts(i int) int {
	if !c.IsMoELayer(i) {
		return 0
	}
	if c.ExpertsPerLayer != nil {
		return c.ExpertsPerLayer[i]
	}
	return c.NumExperts
}

// MoELayers lists the layers with routed experts.
func (c *Config) MoELayers() []int {
	var out []int
	for i := range c.NumLayers {
		if c.IsMoELayer(i) {
			out = append(out, i)
		}
	}
	return out
}

// LayerKind returns layer i's attention kind.
func (c *Config) LayerKind(i int) string {
	if i >= 0 && i < len(c.LayerTypes) {
		return c.LayerTypes[i]
	}
	return FullAttention
}

// LayerAttention returns the KV heads and head dimension of layer i's
// attention, honouring gemma4's global (full-attention) dimensions and
// per_layer_config.
func (c *Config) LayerAttention(i int) (kvHeads, headDim int) {
	kvHeads, headDim = c.NumKVHeads, c.HeadDim
	if c.LayerKind(i) == FullAttention {
		if c.NumGlobalKVHeads > 0 {
			kvHeads = c.NumGlobalKVHeads
		}
		if c.GlobalHeadDim > 0 {
			headDim = c.GlobalHeadDim
		}
	}
	if o, ok := c.perLayer[i]; ok {
		if o.HeadDim > 0 {
			headDim = o.HeadDim
		}
		if o.NumKVHeads > 0 {
			kvHeads = o.NumKVHeads
		}
	}
	return kvHeads, headDim
}

// ExpertWidth returns the routed expert's intermediate width.
func (c *Config) ExpertWidth() int { return c.MoEIntermediateSize }

// DecodeText decodes the text config into v, the keys only an
// architecture's own options read, after checking that the config is of
// modelType: another model_type is fault.ErrUnsupported, malformed JSON
// fault.ErrIO.
func (c *Config) DecodeText(modelType string, v any) error {
	if c.ModelType != modelType {
		return fault.Mark(fmt.Errorf("%s: model_type %q is not %s", c.Name(), c.ModelType, modelType), fault.ErrUnsupported)
	}
	if err := json.Unmarshal(c.Text, v); err != nil {
		return fault.Mark(fmt.Errorf("%s: %w", c.Name(), err), fault.ErrIO)
	}
	return nil
}

// Name returns where the config came from, for messages.
func (c *Config) Name() string {
	if c.Path != "" {
		return c.Path
	}
	return FileName
}
