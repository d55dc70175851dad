package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/maniac-ai/mach/pkg/atomicfile"
	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/quant"
	"github.com/maniac-ai/mach/pkg/registry"
	"github.com/maniac-ai/mach/pkg/safetensors"
	"github.com/maniac-ai/mach/pkg/sidecar"
)

// Options configure an export.
type Options struct {
	// Checkpoint is the checkpoint directory (config.json, safetensors).
	Checkpoint string
	// Output is the sidecar directory (default Checkpoint/expert_sidecar).
	Output string
	// NumExperts, when positive, must equal every layer's expert count.
	NumExperts int
	// Bits, when positive, quantizes bf16/f16/f32 experts to MLX affine
	// with GroupSize; equal to the checkpoint's own affine bits it copies.
	Bits      int
	GroupSize int
	// GroupSizeSet: GroupSize was given explicitly (a different group
	// than the checkpoint's then refuses instead of copying).
	GroupSizeSet bool
	// Workers is how many layers are written at once (default
	// min(GOMAXPROCS, 4)).
	Workers int
	// Progress, when set, is called as experts are written (from several
	// goroutines, serialized by the exporter).
	Progress func(Progress)
	// Registry, when set, refuses a checkpoint whose config.json the
	// architecture's loader would refuse (registry.Arch.ValidateConfig):
	// its sidecar could never be served.
	Registry *registry.Registry
}

// Progress is the state of a running export.
type Progress struct {
	LayersDone, Layers int
	Bytes, TotalBytes  int64
	Elapsed            time.Duration
}

// Result describes a finished export.
type Result struct {
	Dir    string
	Layout *sidecar.Layout
	// Bytes is the size of the layer files.
	Bytes int64
	// Quantized: the experts were quantized on the way.
	Quantized bool
	// Source is the checkpoint's routed-expert quant.
	Source  checkpoint.Quant
	Elapsed time.Duration
}

// Run exports the sidecar. The old layout.json (if any) is removed first
// and the new one written last, so an interrupted run never leaves a
// manifest that describes files it did not finish.
func Run(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Checkpoint == "" {
		return nil, usage("no checkpoint directory")
	}
	if opts.Output == "" {
		opts.Output = filepath.Join(opts.Checkpoint, sidecar.DirName)
	}
	if opts.NumExperts < 0 || opts.Bits < 0 || opts.GroupSize < 0 {
		return nil, usage("--num-experts, --bits and --group-size must not be negative")
	}
	cfg, err := modelconfig.Load(opts.Checkpoint)
	if err != nil {
		return nil, err
	}
	if opts.Registry != nil {
		if arch, ok := opts.Registry.Lookup(cfg.ModelType); ok {
			if err := arch.ValidateConfig(cfg); err != nil {
				return nil, fault.Mark(fmt.Errorf("%s: the %s loader refuses this config.json, so a sidecar for it could never be served: %w", opts.Checkpoint, cfg.ModelType, err), fault.ErrUnsupported)
			}
		}
	}
	in, err := checkpoint.Inspect(opts.Checkpoint, cfg, checkpoint.Options{})
	if err != nil {
		return nil, err
	}
	if !in.WeightsInspected {
		return nil, fault.Mark(fmt.Errorf("%s: no safetensors weights; the sidecar is written from model*.safetensors", opts.Checkpoint), fault.ErrIO)
	}
	set, err := safetensors.OpenSet(opts.Checkpoint)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	srcQuant := in.Quant
	if srcQuant.Source == "sidecar" {
		// A previous sidecar does not describe the tensors being copied.
		srcQuant = checkpoint.Quant{Mode: "unknown"}
	}
	p, err := newPlan(opts.Checkpoint, cfg, set.Headers, srcQuant, opts)
	if err != nil {
		return nil, err
	}
	if p.layout.Quant.Mode == "" || p.layout.Quant.Mode == "unknown" {
		return nil, mismatch("%s: cannot tell how the routed experts are stored (%s)", opts.Checkpoint, srcQuant)
	}
	if err := prepareOutput(opts.Output, p.layout.TotalBytes()); err != nil {
		return nil, err
	}
	w := &writer{set: set, plan: p, opts: opts, start: start, total: p.layout.TotalBytes()}
	if err := w.run(ctx); err != nil {
		return nil, err
	}
	if err := removeStale(opts.Output, p.layout); err != nil {
		return nil, err
	}
	if err := p.layout.WriteFile(opts.Output); err != nil {
		return nil, err
	}
	return &Result{Dir: opts.Output, Layout: p.layout, Bytes: p.layout.TotalBytes(), Quantized: p.quantize, Source: srcQuant, Elapsed: time.Since(start)}, nil
}

// prepareOutput creates the directory, removes an old manifest and checks
// the free space.
func prepareOutput(dir string, need int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fault.Mark(fmt.Errorf("create %s: %w", dir, err), fault.ErrIO)
	}
	lp := filepath.Join(dir, sidecar.LayoutName)
	switch err := os.Remove(lp); {
	case err == nil:
		if err := atomicfile.SyncDir(dir); err != nil {
			return fault.Mark(err, fault.ErrIO)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fault.Mark(fmt.Errorf("remove the old %s: %w", lp, err), fault.ErrIO)
	}
	// Old layer files are replaced one by one, so their bytes still count
	// as available.
	var old int64
	if m, _ := filepath.Glob(filepath.Join(dir, "layer_*.bin")); m != nil {
		for _, f := range m {
			if st, err := os.Stat(f); err == nil {
				old += st.Size()
			}
		}
	}
	if free, ok := freeBytes(dir); ok && free+old < need {
		return fault.Mark(fmt.Errorf("%s: the sidecar needs %.2f GB, only %.2f GB are free", dir, float64(need)/1e9, float64(free+old)/1e9), fault.ErrIO)
	}
	return nil
}

var layerFile = regexp.MustCompile(`^layer_[0-9]+\.bin$`)

// removeStale deletes layer files a previous export left that the new
// layout does not declare.
func removeStale(dir string, l *sidecar.Layout) error {
	keep := map[string]bool{}
	for _, ly := range l.Layers {
		keep[ly.File] = true
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !layerFile.MatchString(e.Name()) || keep[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fault.Mark(fmt.Errorf("remove stale %s: %w", e.Name(), err), fault.ErrIO)
		}
	}
	return nil
}

// writer writes the layer files.
type writer struct {
	set   *safetensors.Set
	plan  *plan
	opts  Options
	start time.Time
	total int64

	written    atomic.Int64
	layersDone atomic.Int64
	progressMu sync.Mutex
}

func (w *writer) report() {
	if w.opts.Progress == nil {
		return
	}
	w.progressMu.Lock()
	defer w.progressMu.Unlock()
	w.opts.Progress(Progress{
		LayersDone: int(w.layersDone.Load()), Layers: len(w.plan.layers),
		Bytes: w.written.Load(), TotalBytes: w.total, Elapsed: time.Since(w.start),
	})
}

func (w *writer) run(ctx context.Context) error {
	workers := w.opts.Workers
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), 4)
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for li, lp := range w.plan.layers {
		g.Go(func() error {
			experts, err := w.writeLayer(ctx, lp)
			if err != nil {
				return err
			}
			// Each goroutine owns its layer's entry.
			w.plan.layout.Layers[li].Experts = experts
			w.layersDone.Add(1)
			w.report()
			return nil
		})
	}
	return g.Wait()
}

// writeLayer writes one layer file atomically and returns its per-expert
// entries.
func (w *writer) writeLayer(ctx context.Context, lp *layerPlan) ([]sidecar.Expert, error) {
	l := w.plan.layout
	path := filepath.Join(w.opts.Output, lp.file)
	payload := l.PayloadSize()
	entries := make([]sidecar.Expert, lp.experts)
	slab := make([]byte, l.ExpertStride)
	err := atomicfile.Write(path, 0o644, func(out io.Writer) error {
		for e := 0; e < lp.experts; e++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			clear(slab)
			if err := w.fillSlab(lp, e, slab); err != nil {
				return err
			}
			entries[e] = sidecar.Expert{Offset: int64(e) * l.ExpertStride, Size: payload, CRC32C: sidecar.FormatCRC32C(sidecar.CRC32C(slab[:payload]))}
			if _, err := out.Write(slab); err != nil {
				return fault.Mark(fmt.Errorf("write %s: %w", path, err), fault.ErrIO)
			}
			w.written.Add(int64(len(slab)))
			if e%8 == 7 {
				w.report()
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	dropCache(path)
	return entries, nil
}

// expertBytes returns expert e's bytes of source s, in place in the
// mapping.
func (w *writer) expertBytes(s *source, e int) ([]byte, error) {
	name := s.tensorName(e)
	b, info, err := w.set.Bytes(name)
	if err != nil {
		return nil, fault.Mark(err, fault.ErrIO)
	}
	if s.stacked == nil {
		return b, nil
	}
	per := int64(len(b)) / info.Shape[0]
	return b[int64(e)*per : int64(e+1)*per], nil
}

// fillSlab writes expert e of layer lp into slab (zeroed, stride bytes).
func (w *writer) fillSlab(lp *layerPlan, e int, slab []byte) error {
	comps := w.plan.comps
	for i := 0; i < len(comps); i++ {
		c := comps[i]
		s := lp.sources[c.src]
		src, err := w.expertBytes(s, e)
		if err != nil {
			return err
		}
		if c.quantPart == "" {
			if int64(len(src)) != c.Size {
				return mismatch("layer %d expert %d %s: %d bytes, want %d", lp.index, e, c.Name, len(src), c.Size)
			}
			copy(slab[c.Offset:c.Offset+c.Size], src)
			continue
		}
		// A quantized weight: weight, scales and biases follow each other
		// in comps; quantize once and place all three.
		m, err := w.quantize(s, src)
		if err != nil {
			return fmt.Errorf("layer %d expert %d %s: %w", lp.index, e, s.name, err)
		}
		for j, part := range [][]byte{m.Data, m.Scales, m.Biases} {
			qc := comps[i+j]
			if int64(len(part)) != qc.Size {
				return mismatch("layer %d expert %d %s: %d bytes, want %d", lp.index, e, qc.Name, len(part), qc.Size)
			}
			copy(slab[qc.Offset:qc.Offset+qc.Size], part)
		}
		i += 2
	}
	return nil
}

// quantize turns one expert's float weight into MLX affine codes, scales
// and biases (scales in the source's float type, as MLX does).
func (w *writer) quantize(s *source, src []byte) (*quant.Matrix, error) {
	rows, cols := int(s.shape[0]), int(s.shape[1])
	m := &quant.Matrix{Format: quant.Format{Kind: kindOf(s.dtype)}, Rows: rows, Cols: cols, Data: src}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	vals := m.Dequantize()
	if s.transposed {
		t := make([]float32, len(vals))
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				t[c*rows+r] = vals[r*cols+c]
			}
		}
		vals, rows, cols = t, cols, rows
	}
	return quant.QuantizeAffine(vals, rows, cols, w.opts.Bits, w.opts.GroupSize, w.plan.scaleType)
}
