// Package sidecar defines the expert sidecar: a directory expert_sidecar/
// next to an engine-layout checkpoint holding, for every MoE layer, one file
// layer_XX.bin with that layer's routed experts packed back to back, so the
// expert store can fetch one expert with a single pread. layout.json
// describes the packing; it is the manifest, written last.
//
// Format (version 1):
//
//	{
//	  "format": "mach-expert-sidecar",
//	  "version": 1,
//	  "model_type": "qwen3_5_moe",            // optional, checked against config.json
//	  "num_experts": 256,                      // experts per layer (a layer may override)
//	  "quant": {"mode": "affine", "bits": 4, "group_size": 64},
//	  "alignment": 4096,                       // every expert slab starts at a multiple
//	  "expert_stride": 1769472,                // bytes from one expert to the next
//	  "checksum": "crc32c",                    // algorithm of the per-expert checksums
//	  "components": [                          // one expert's slab, identical in every layer
//	    {"name": "gate_proj.weight", "dtype": "U32", "shape": [512, 256], "offset": 0, "size": 524288},
//	    {"name": "gate_proj.scales", "dtype": "BF16", "shape": [512, 32], "offset": 524288, "size": 32768},
//	    ...
//	  ],
//	  "layers": [
//	    {"index": 0, "file": "layer_00.bin", "size": 452984832,
//	     "experts": [{"offset": 0, "size": 1766400, "crc32c": "1c2d3e4f"}, ...]},
//	    ...
//	  ]
//	}
//
// Expert e of a layer starts at byte e·expert_stride of the layer file and
// component c at e·expert_stride + c.offset. A layer file is exactly
// num_experts·expert_stride bytes. Component dtypes are safetensors dtypes
// (BF16, U32, U8, ...) or GGUF block types (Q8_0, Q4_K, Q2_K, IQ2_XXS,
// IQ2_XS, IQ2_S, IQ3_XXS, IQ4_NL, MXFP4) for 2-bit and other GGUF experts;
// shape is the per-expert shape in elements ([rows, columns] for matrices,
// [rows, groups, 16] for gpt-oss MXFP4 blocks), so size follows from dtype
// and shape. Component names are "<projection>.<part>" with projection
// gate_proj, up_proj, down_proj or gate_up_proj and part weight, scales,
// biases, bias or blocks; "transposed" marks a weight stored input-major
// ([in, out], gpt-oss bf16) and "interleaved" a gate_up_proj whose rows
// alternate gate and up.
//
// Per-expert entries (written by mach-export-sidecar; optional in layouts
// from older tools) give each expert's offset (always e·expert_stride), the
// size of its payload (the components, without the padding up to the
// stride) and the CRC-32C (Castagnoli) of those bytes as 8 lower-case hex
// digits. CRC-32C is in Go's standard library and hardware-accelerated on
// amd64 and arm64, so the streaming store can check an expert on its first
// read for a few percent of the read's cost. An optional per-layer sha256
// of the whole file is also checked by VerifyChecksums.
package sidecar

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
	"strings"

	"github.com/maniac-ai/mach/pkg/atomicfile"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// Names of the sidecar directory and its manifest.
const (
	DirName    = "expert_sidecar"
	LayoutName = "layout.json"
	// Format is layout.json's "format" value.
	Format = "mach-expert-sidecar"
	// Version is the layout version this package reads and writes.
	Version = 1
	// ChecksumCRC32C is the per-expert checksum algorithm.
	ChecksumCRC32C = "crc32c"
	// DirectIOAlignment is the alignment the exporter uses: the page and
	// logical-block size that O_DIRECT reads need.
	DirectIOAlignment = 4096
)

// Limits on untrusted layouts.
const (
	MaxLayoutSize = 64 << 20
	maxExperts    = 1 << 20
	maxLayers     = 1 << 16
	maxAlignment  = 1 << 30
)

// ErrInvalid is wrapped by every error about a malformed layout.json.
var ErrInvalid = errors.New("invalid expert sidecar layout")

// ErrIncomplete is wrapped when layout.json is valid but the layer files on
// disk do not match it (missing or of the wrong size).
var ErrIncomplete = errors.New("incomplete expert sidecar")

// Quant is the routed-expert quantization the sidecar stores.
type Quant struct {
	// Mode: bf16, f16, f32, affine, mxfp4, or a GGUF type in lower case
	// (iq2_xxs, iq2_xs, q2_k, ...).
	Mode      string `json:"mode"`
	Bits      int    `json:"bits"`
	GroupSize int    `json:"group_size,omitempty"`
}

// String renders the quant as mach check does: "affine (4-bit, group
// 64)", "bf16 (16-bit)".
func (q Quant) String() string {
	switch {
	case q.Bits == 0:
		return q.Mode
	case q.GroupSize > 0:
		return fmt.Sprintf("%s (%d-bit, group %d)", q.Mode, q.Bits, q.GroupSize)
	}
	return fmt.Sprintf("%s (%d-bit)", q.Mode, q.Bits)
}

// Component is one tensor of an expert's slab.
type Component struct {
	Name   string  `json:"name"`
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	Offset int64   `json:"offset"`
	Size   int64   `json:"size"`
	// Transposed: the weight is stored input-major, [in, out].
	Transposed bool `json:"transposed,omitempty"`
	// Interleaved: a gate_up_proj weight alternates gate and up rows.
	Interleaved bool `json:"interleaved,omitempty"`
}

// End returns the byte just past the component within the slab.
func (c Component) End() int64 { return c.Offset + c.Size }

// Expert is one expert's entry in a layer: where its slab starts, how many
// bytes of it are payload, and their checksum.
type Expert struct {
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
	// CRC32C is the CRC-32C (Castagnoli) of the payload, 8 hex digits.
	CRC32C string `json:"crc32c"`
}

// Layer is one MoE layer's file.
type Layer struct {
	Index int    `json:"index"`
	File  string `json:"file"`
	Size  int64  `json:"size"`
	// NumExperts overrides the layout's count for a layer pruned to a
	// different number of experts.
	NumExperts int `json:"num_experts,omitempty"`
	// SHA256 of the file, hex, optional; checked by VerifyChecksums.
	SHA256 string `json:"sha256,omitempty"`
	// Experts has one entry per expert, in order (see the package doc);
	// absent in layouts from tools that record no checksums.
	Experts []Expert `json:"experts,omitempty"`
}

// Layout is a parsed, validated layout.json.
type Layout struct {
	Format       string `json:"format"`
	Version      int    `json:"version"`
	ModelType    string `json:"model_type,omitempty"`
	NumExperts   int    `json:"num_experts"`
	Quant        Quant  `json:"quant"`
	Alignment    int64  `json:"alignment"`
	ExpertStride int64  `json:"expert_stride"`
	// Checksum names the algorithm of the per-expert checksums ("crc32c");
	// empty when the layers carry none.
	Checksum   string      `json:"checksum,omitempty"`
	Components []Component `json:"components"`
	Layers     []Layer     `json:"layers"`
}

func invalid(format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...)), fault.ErrIO)
}

// LayerFileName is the conventional file name of layer i of a model with
// at most 100 layers.
func LayerFileName(i int) string { return fmt.Sprintf("layer_%02d.bin", i) }

// LayerFileNameWidth is the file name of layer i of a model with layers
// layers, zero-padded to the width the largest index needs (at least two
// digits): layer_07.bin of 48 layers, layer_007.bin of 120.
func LayerFileNameWidth(i, layers int) string {
	w := len(strconv.Itoa(max(layers-1, 0)))
	return fmt.Sprintf("layer_%0*d.bin", max(w, 2), i)
}

// Parse decodes and validates layout.json bytes. It checks the layout's
// internal consistency only; Verify checks the files.
func Parse(data []byte) (*Layout, error) {
	if len(data) > MaxLayoutSize {
		return nil, invalid("layout is %d bytes, larger than %d", len(data), MaxLayoutSize)
	}
	d := bytes.TrimSpace(data)
	if len(d) == 0 || d[0] != '{' {
		return nil, invalid("not a JSON object")
	}
	var l Layout
	dec := json.NewDecoder(bytes.NewReader(d))
	if err := dec.Decode(&l); err != nil {
		return nil, invalid("%v", err)
	}
	if dec.More() {
		return nil, invalid("trailing data after the JSON object")
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return &l, nil
}

// Validate checks the layout's internal consistency: version, counts,
// component sizes and offsets, layer files and sizes.
func (l *Layout) Validate() error {
	if l.Format != Format {
		return invalid("format is %q, want %q", l.Format, Format)
	}
	if l.Version != Version {
		return invalid("version %d is not supported by this build (it reads version %d)", l.Version, Version)
	}
	if l.NumExperts <= 0 || l.NumExperts > maxExperts {
		return invalid("num_experts %d out of range (1..%d)", l.NumExperts, maxExperts)
	}
	if l.Quant.Mode == "" {
		return invalid("quant.mode is empty")
	}
	if l.Quant.Bits < 0 || l.Quant.Bits > 64 || l.Quant.GroupSize < 0 || l.Quant.GroupSize > 1<<20 {
		return invalid("quant bits %d / group_size %d out of range", l.Quant.Bits, l.Quant.GroupSize)
	}
	if l.Alignment < 0 || l.Alignment > maxAlignment || (l.Alignment > 0 && l.Alignment&(l.Alignment-1) != 0) {
		return invalid("alignment %d is not a power of two up to %d", l.Alignment, maxAlignment)
	}
	if l.ExpertStride <= 0 || l.ExpertStride > math.MaxInt64/maxExperts {
		return invalid("expert_stride %d out of range", l.ExpertStride)
	}
	if l.Alignment > 0 && l.ExpertStride%l.Alignment != 0 {
		return invalid("expert_stride %d is not a multiple of the alignment %d", l.ExpertStride, l.Alignment)
	}
	if l.Checksum != "" && l.Checksum != ChecksumCRC32C {
		return invalid("checksum algorithm %q is not supported by this build (it reads %q)", l.Checksum, ChecksumCRC32C)
	}
	if err := l.validateComponents(); err != nil {
		return err
	}
	return l.validateLayers()
}

func (l *Layout) validateComponents() error {
	if len(l.Components) == 0 {
		return invalid("no components")
	}
	seen := map[string]bool{}
	order := make([]int, len(l.Components))
	for i, c := range l.Components {
		order[i] = i
		if c.Name == "" || seen[c.Name] {
			return invalid("component %d: empty or duplicate name %q", i, c.Name)
		}
		seen[c.Name] = true
		want, err := ComponentSize(c.DType, c.Shape)
		if err != nil {
			return invalid("component %q: %v", c.Name, err)
		}
		if c.Size != want {
			return invalid("component %q: %s%v needs %d bytes, size says %d", c.Name, c.DType, c.Shape, want, c.Size)
		}
		if c.Offset < 0 || c.Offset > l.ExpertStride || c.Size > l.ExpertStride-c.Offset {
			return invalid("component %q: bytes [%d, %d) fall outside the %d-byte expert stride", c.Name, c.Offset, c.Offset+c.Size, l.ExpertStride)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmpInt64(l.Components[a].Offset, l.Components[b].Offset)
	})
	for i := 1; i < len(order); i++ {
		p, c := l.Components[order[i-1]], l.Components[order[i]]
		if p.Size > 0 && c.Size > 0 && c.Offset < p.Offset+p.Size {
			return invalid("components %q and %q overlap", p.Name, c.Name)
		}
	}
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (l *Layout) validateLayers() error {
	if len(l.Layers) == 0 {
		return invalid("no layers")
	}
	if len(l.Layers) > maxLayers {
		return invalid("%d layers, more than %d", len(l.Layers), maxLayers)
	}
	seenIdx := map[int]bool{}
	seenFile := map[string]bool{}
	for _, ly := range l.Layers {
		if ly.Index < 0 || ly.Index >= maxLayers {
			return invalid("layer index %d out of range", ly.Index)
		}
		if seenIdx[ly.Index] {
			return invalid("layer %d listed twice", ly.Index)
		}
		seenIdx[ly.Index] = true
		if !plainName(ly.File) {
			return invalid("layer %d: file %q is not a plain file name inside %s/", ly.Index, ly.File, DirName)
		}
		if seenFile[ly.File] {
			return invalid("layer %d: file %q is used by another layer", ly.Index, ly.File)
		}
		seenFile[ly.File] = true
		n := l.LayerExperts(ly)
		if n <= 0 || n > maxExperts {
			return invalid("layer %d: num_experts %d out of range", ly.Index, n)
		}
		if want := int64(n) * l.ExpertStride; ly.Size != want {
			return invalid("layer %d: size %d, but %d experts × stride %d = %d bytes", ly.Index, ly.Size, n, l.ExpertStride, want)
		}
		if ly.SHA256 != "" && !isHex(ly.SHA256, 64) {
			return invalid("layer %d: sha256 %q is not 64 hex digits", ly.Index, ly.SHA256)
		}
		if err := l.validateExperts(ly, n); err != nil {
			return err
		}
	}
	slices.SortFunc(l.Layers, func(a, b Layer) int { return a.Index - b.Index })
	return nil
}

// validateExperts checks a layer's per-expert entries against the stride
// and the components.
func (l *Layout) validateExperts(ly Layer, n int) error {
	if len(ly.Experts) == 0 {
		return nil
	}
	if l.Checksum != ChecksumCRC32C {
		return invalid("layer %d lists expert checksums, but the layout's checksum algorithm is %q (this build reads %q)", ly.Index, l.Checksum, ChecksumCRC32C)
	}
	if len(ly.Experts) != n {
		return invalid("layer %d: %d expert entries for %d experts", ly.Index, len(ly.Experts), n)
	}
	need := l.PayloadSize()
	for e, x := range ly.Experts {
		if x.Offset != int64(e)*l.ExpertStride {
			return invalid("layer %d expert %d: offset %d, want %d (expert × stride)", ly.Index, e, x.Offset, int64(e)*l.ExpertStride)
		}
		if x.Size < need || x.Size > l.ExpertStride {
			return invalid("layer %d expert %d: size %d outside [%d, %d] (the components' end, the stride)", ly.Index, e, x.Size, need, l.ExpertStride)
		}
		if !isHex(x.CRC32C, 8) {
			return invalid("layer %d expert %d: crc32c %q is not 8 hex digits", ly.Index, e, x.CRC32C)
		}
	}
	return nil
}

// PayloadSize is the end of the last component: the bytes of an expert's
// slab that hold data.
func (l *Layout) PayloadSize() int64 {
	var end int64
	for _, c := range l.Components {
		end = max(end, c.End())
	}
	return end
}

// HasChecksums reports whether every layer carries per-expert checksums.
func (l *Layout) HasChecksums() bool {
	for _, ly := range l.Layers {
		if len(ly.Experts) == 0 {
			return false
		}
	}
	return len(l.Layers) > 0
}

// Component returns the component named name.
func (l *Layout) Component(name string) (Component, bool) {
	for _, c := range l.Components {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`+"\x00") && filepath.Base(s) == s
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// LayerExperts returns the expert count of a layer.
func (l *Layout) LayerExperts(ly Layer) int {
	if ly.NumExperts > 0 {
		return ly.NumExperts
	}
	return l.NumExperts
}

// Layer returns the entry of MoE layer index.
func (l *Layout) Layer(index int) (Layer, bool) {
	i, ok := slices.BinarySearchFunc(l.Layers, index, func(a Layer, t int) int { return a.Index - t })
	if !ok {
		return Layer{}, false
	}
	return l.Layers[i], true
}

// Indices returns the declared layer indices, ascending.
func (l *Layout) Indices() []int {
	out := make([]int, len(l.Layers))
	for i, ly := range l.Layers {
		out[i] = ly.Index
	}
	return out
}

// TotalBytes is the sum of the layer file sizes.
func (l *Layout) TotalBytes() int64 {
	var n int64
	for _, ly := range l.Layers {
		n += ly.Size
	}
	return n
}

// ExpertOffset returns the byte offset of expert e in layer ly's file.
func (l *Layout) ExpertOffset(ly Layer, e int) (int64, error) {
	if e < 0 || e >= l.LayerExperts(ly) {
		return 0, fmt.Errorf("sidecar: layer %d has no expert %d", ly.Index, e)
	}
	return int64(e) * l.ExpertStride, nil
}

// ggufBlock is a GGUF block type: elements and bytes per block.
type ggufBlock struct{ elems, bytes int64 }

// ggufBlocks are the block layouts of the GGUF types an expert sidecar may
// hold (ggml-common.h).
var ggufBlocks = map[string]ggufBlock{
	"Q8_0":    {32, 34},
	"Q4_0":    {32, 18},
	"IQ4_NL":  {32, 18},
	"MXFP4":   {32, 17},
	"Q2_K":    {256, 84},
	"Q3_K":    {256, 110},
	"Q4_K":    {256, 144},
	"Q5_K":    {256, 176},
	"Q6_K":    {256, 210},
	"IQ2_XXS": {256, 66},
	"IQ2_XS":  {256, 74},
	"IQ2_S":   {256, 82},
	"IQ3_XXS": {256, 98},
}

// IsGGUFType reports whether dtype is a GGUF block type.
func IsGGUFType(dtype string) bool {
	_, ok := ggufBlocks[dtype]
	return ok
}

// ComponentSize returns the bytes a component of dtype and shape occupies.
func ComponentSize(dtype string, shape []int64) (int64, error) {
	if len(shape) == 0 || len(shape) > 4 {
		return 0, fmt.Errorf("shape %v: want 1 to 4 dimensions", shape)
	}
	elems := int64(1)
	for _, d := range shape {
		if d <= 0 || d > 1<<40 || elems > math.MaxInt64/8/d {
			return 0, fmt.Errorf("shape %v out of range", shape)
		}
		elems *= d
	}
	if b, ok := ggufBlocks[dtype]; ok {
		cols := shape[len(shape)-1]
		if cols%b.elems != 0 {
			return 0, fmt.Errorf("%s needs rows that are a multiple of %d values, have %d", dtype, b.elems, cols)
		}
		return elems / b.elems * b.bytes, nil
	}
	bits := safetensors.DType(dtype).Bits()
	if bits == 0 {
		return 0, fmt.Errorf("unknown dtype %q", dtype)
	}
	if elems*int64(bits)%8 != 0 {
		return 0, fmt.Errorf("%d elements of %s are not a whole number of bytes", elems, dtype)
	}
	return elems * int64(bits) / 8, nil
}

// ReadFile reads and validates a layout.json.
func ReadFile(path string) (*Layout, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("open %s: %w", path, err), fault.ErrIO)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxLayoutSize+1))
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("read %s: %w", path, err), fault.ErrIO)
	}
	l, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// Verify checks that every declared layer file exists in dir (the
// expert_sidecar directory) with the declared size. It does not read the
// files; checksums are verified by VerifyChecksums.
func (l *Layout) Verify(dir string) error {
	for _, ly := range l.Layers {
		p := filepath.Join(dir, ly.File)
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fault.Mark(fmt.Errorf("%w: layout.json declares layer %d but %s is missing; re-run mach-export-sidecar", ErrIncomplete, ly.Index, p), fault.ErrIO)
		case err != nil:
			return fault.Mark(fmt.Errorf("%w: stat %s: %v", ErrIncomplete, p, err), fault.ErrIO)
		case !st.Mode().IsRegular():
			return fault.Mark(fmt.Errorf("%w: %s is not a regular file", ErrIncomplete, p), fault.ErrIO)
		case st.Size() != ly.Size:
			return fault.Mark(fmt.Errorf("%w: %s is %d bytes, layout.json declares %d; re-run mach-export-sidecar", ErrIncomplete, p, st.Size(), ly.Size), fault.ErrIO)
		}
	}
	return nil
}

// Load reads dir/layout.json and verifies the layer files in dir.
func Load(dir string) (*Layout, error) {
	l, err := ReadFile(filepath.Join(dir, LayoutName))
	if err != nil {
		return nil, err
	}
	if err := l.Verify(dir); err != nil {
		return nil, err
	}
	return l, nil
}

// Marshal returns the layout as indented JSON after validating it.
func (l *Layout) Marshal() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteFile writes the layout atomically to dir/layout.json. Exporters call
// it last, after every layer file is complete, so a half-written sidecar
// never has a manifest.
func (l *Layout) WriteFile(dir string) error {
	b, err := l.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, LayoutName), b, 0o644)
}
