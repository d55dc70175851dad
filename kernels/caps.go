package kernels

import (
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/quant"
)

// Op names an operation or operand feature a backend may advertise.
type Op string

// Optional operations and features. The core Backend methods are always
// present; these say which variants work.
const (
	OpGroupedMatMul    Op = "grouped_matmul"    // GroupedMatMuler
	OpAttentionSinks   Op = "attention_sinks"   // Attention.Sinks
	OpAttentionSoftcap Op = "attention_softcap" // Attention.Softcap
	OpSlidingWindow    Op = "sliding_window"    // Attention.Window
	OpKeyPositions     Op = "key_positions"     // Attention.KPos
	OpRoPEInterleaved  Op = "rope_interleaved"  // RoPE.Interleaved
	OpSiLULimited      Op = "silu_limited"      // Activation SiLULimited
	OpGeLUTanh         Op = "gelu_tanh"         // Activation GeLUTanh
	OpRouteSigmoid     Op = "route_sigmoid"     // Routing Sigmoid / SqrtSoftplus and Bias
	// OpBatchInvariant: every output row of MatMul and MatMulGrouped is
	// computed by the same sequence of floating-point operations whatever
	// the number of rows, so batching sequences never changes their results.
	OpBatchInvariant Op = "batch_invariant"
)

// Capabilities is what a backend implements.
type Capabilities struct {
	// Ops lists the optional operations and features.
	Ops []Op
	// Formats lists the weight formats MatMul and Embed accept. A format
	// matches when Kind, Bits and Scale agree and GroupSize is listed or 0
	// (any group size).
	Formats []quant.Format
	// CacheTypes lists the element types Attention reads k and v in.
	CacheTypes []DType
}

// Has reports whether op is advertised.
func (c Capabilities) Has(op Op) bool { return slices.Contains(c.Ops, op) }

// Supports reports whether weights in format f can be bound.
func (c Capabilities) Supports(f quant.Format) bool {
	for _, g := range c.Formats {
		if g.Kind != f.Kind {
			continue
		}
		if g.Bits != 0 && g.Bits != f.Bits {
			continue
		}
		if g.Scale != quant.ScaleNone && g.Scale != f.Scale {
			continue
		}
		if g.GroupSize != 0 && g.GroupSize != f.GroupSize {
			continue
		}
		return true
	}
	return false
}

func (c Capabilities) String() string {
	var parts []string
	for _, o := range c.Ops {
		parts = append(parts, string(o))
	}
	for _, f := range c.Formats {
		parts = append(parts, f.String())
	}
	return strings.Join(parts, " ")
}
