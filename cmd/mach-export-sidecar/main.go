// Mach-export-sidecar writes expert_sidecar/ (layout.json and one
// layer_XX.bin per MoE layer) for direct-pread expert streaming.
package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/maniac-ai/mach/pkg/cliapp"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/sidecar"
	"github.com/maniac-ai/mach/pkg/sidecar/export"
	"github.com/urfave/cli/v2"
)

func main() {
	app := newApp()
	os.Exit(cliapp.Main(app, cliapp.Interspersed(app, os.Args)))
}

const description = `
Reads the routed experts of a checkpoint (config.json and model*.safetensors;
per-expert tensors, MLX stacked switch_mlp, transformers fused gate_up_proj or
gpt-oss blocks, whatever mach check recognises) and writes, under --output
(default CHECKPOINT/expert_sidecar):

  layer_XX.bin   one file per MoE layer (XX zero-padded to the width the
                 layer count needs): expert e's tensors (gate/up/down
                 weights and their scales, biases or bias) packed back to
                 back in one slab at byte e × expert_stride, every slab
                 aligned to 4 KiB for direct I/O
  layout.json    the manifest, written last: format version, model_type,
                 expert count, quant (mode, bits, group size), alignment,
                 expert_stride, every tensor's offset, shape and dtype within
                 a slab, and per layer and expert the offset, payload size
                 and CRC-32C checksum

Without --bits, or with the checkpoint's own bits, the expert bytes are copied
unchanged whatever their dtype. --bits B on bf16/f16/f32 experts quantizes them
to MLX affine (B bits, --group-size values per scale/bias, scales in the
source's float type) on the way; quantized experts are never requantized.
--num-experts, when given, must equal the checkpoint's routed experts per
layer.

An old layout.json in --output is removed before any layer file is written
and each layer file is replaced atomically, so an interrupted export leaves no
manifest. Check the result with: mach check CHECKPOINT --verify.

Progress is shown on a terminal; --json prints a summary object: output,
model_type, layers, num_experts, quant {mode, bits, group_size},
expert_stride, bytes, quantized, seconds.

EXAMPLES:
   mach-export-sidecar --checkpoint ./qwen3_6_35b_a3b_engine_k256 --num-experts 256 --bits 4
   mach-export-sidecar --checkpoint ./ckpt --output /nvme/ckpt_sidecar
   mach-export-sidecar --checkpoint ./qwen3-bf16 --bits 4 --group-size 64 --json`

func newApp() *cli.App {
	app := cliapp.NewApp("mach-export-sidecar", "write expert_sidecar/ for direct-pread streaming", description)
	app.Flags = append(app.Flags,
		&cli.StringFlag{Name: "checkpoint", Usage: "checkpoint directory (config.json, model*.safetensors)"},
		&cli.StringFlag{Name: "output", Usage: "output directory (default CHECKPOINT/expert_sidecar)"},
		&cli.IntFlag{Name: "num-experts", Usage: "routed experts per layer; refused when the checkpoint disagrees (default: the checkpoint's)"},
		&cli.IntFlag{Name: "bits", Usage: "quantize bf16/f16/f32 experts to B-bit MLX affine (2, 3, 4, 5, 6, 8) on the way"},
		&cli.IntFlag{Name: "group-size", Value: 64, Usage: "values per scale and bias for --bits"},
		&cli.IntFlag{Name: "workers", Usage: "layers written at once (default min(cores, 4))"},
		cliapp.JSONFlag("print a summary object as JSON"),
	)
	app.Action = func(c *cli.Context) error {
		if err := cliapp.NoArgs(c); err != nil {
			return err
		}
		opts := export.Options{
			Checkpoint:   c.String("checkpoint"),
			Output:       c.String("output"),
			NumExperts:   c.Int("num-experts"),
			Bits:         c.Int("bits"),
			GroupSize:    c.Int("group-size"),
			GroupSizeSet: c.IsSet("group-size"),
			Workers:      c.Int("workers"),
			Registry:     registry.Default(),
		}
		switch {
		case opts.Checkpoint == "":
			return cliapp.Usagef("missing --checkpoint DIR")
		case opts.NumExperts < 0:
			return cliapp.Usagef("--num-experts %d: want a positive count", opts.NumExperts)
		case opts.Bits < 0:
			return cliapp.Usagef("--bits %d: want 2, 3, 4, 5, 6 or 8", opts.Bits)
		case opts.GroupSize <= 0:
			return cliapp.Usagef("--group-size %d: want a positive group size", opts.GroupSize)
		case opts.Workers < 0:
			return cliapp.Usagef("--workers %d: want a positive count", opts.Workers)
		case opts.GroupSizeSet && opts.Bits == 0:
			return cliapp.Usagef("--group-size applies to --bits")
		}
		if st, err := os.Stat(opts.Checkpoint); err != nil || !st.IsDir() {
			return cliapp.Usagef("--checkpoint %s: not a directory", opts.Checkpoint)
		}
		return run(c.Context, opts, c.Bool("json"), c.App.Writer, c.App.ErrWriter)
	}
	return app
}

func run(ctx context.Context, opts export.Options, asJSON bool, stdout, stderr io.Writer) error {
	terminal := isTerminal(stderr)
	if terminal {
		opts.Progress = func(p export.Progress) {
			rate := 0.0
			if s := p.Elapsed.Seconds(); s > 0 {
				rate = float64(p.Bytes) / s / 1e6
			}
			fmt.Fprintf(stderr, "\rexporting: %d/%d layers, %.2f/%.2f GB, %.0f MB/s\033[K",
				p.LayersDone, p.Layers, float64(p.Bytes)/1e9, float64(p.TotalBytes)/1e9, rate)
		}
	}
	res, err := export.Run(ctx, opts)
	if terminal {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	l := res.Layout
	if asJSON {
		q := map[string]any{"mode": l.Quant.Mode, "bits": l.Quant.Bits, "group_size": nil}
		if l.Quant.GroupSize > 0 {
			q["group_size"] = l.Quant.GroupSize
		}
		perLayer := make([]int, len(l.Layers))
		for i, ly := range l.Layers {
			perLayer[i] = l.LayerExperts(ly)
		}
		return cliapp.WriteJSON(stdout, map[string]any{
			"output": res.Dir, "model_type": l.ModelType, "layers": len(l.Layers), "num_experts": l.NumExperts,
			"experts_per_layer": perLayer, "quant": q, "expert_stride": l.ExpertStride, "bytes": res.Bytes, "quantized": res.Quantized,
			"seconds": res.Elapsed.Seconds(),
		})
	}
	how := "copied unchanged"
	if res.Quantized {
		how = fmt.Sprintf("quantized from %s", res.Source)
	}
	fmt.Fprintf(stdout, "wrote %s: %s, %s experts (%s), %.2f GB in %.1f s\n",
		res.Dir, expertCounts(l), l.Quant, how, float64(res.Bytes)/1e9, res.Elapsed.Seconds())
	return nil
}

// expertCounts describes the layers' expert counts: "4 layers × 8 experts"
// when every layer holds the same number, else the range and the total
// ("4 layers, 2–7 experts (23 in all)") of a checkpoint pruned unevenly.
func expertCounts(l *sidecar.Layout) string {
	if len(l.Layers) == 0 {
		return "0 layers"
	}
	lo, hi, total := math.MaxInt, 0, 0
	for _, ly := range l.Layers {
		n := l.LayerExperts(ly)
		lo, hi, total = min(lo, n), max(hi, n), total+n
	}
	if lo == hi {
		return fmt.Sprintf("%d layers × %d experts", len(l.Layers), lo)
	}
	return fmt.Sprintf("%d layers, %d–%d experts (%d in all)", len(l.Layers), lo, hi, total)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
