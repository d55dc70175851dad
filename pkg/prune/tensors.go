package prune

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/maniac-ai/mach/pkg/checkpoint"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// copyBuffer is the size of the reads that stream tensors.
const copyBuffer = 4 << 20

// outTensor is one tensor of the output and how to produce its bytes.
type outTensor struct {
	name   string
	dtype  safetensors.DType
	shape  []int64
	size   int64
	expert bool // a routed-expert tensor (for the byte accounting)
	// write writes exactly size bytes.
	write func(w io.Writer) error
}

func (j *job) ioErrf(format string, args ...any) error {
	return fault.Mark(fmt.Errorf("%s: %w: %s", j.opts.Source, checkpoint.ErrMismatch, fmt.Sprintf(format, args...)), fault.ErrIO)
}

// plan decides every output tensor, config.json, expert_map.json and the
// files to copy.
func (j *job) plan() error {
	hs := j.hs
	// MTP layers keep all their experts; count them from any stacked
	// tensor or the per-expert indices.
	for _, name := range hs.Names() {
		kind, et := checkpoint.Classify(j.model, name)
		if kind != checkpoint.RoutedExpert || !et.MTP {
			continue
		}
		e, _ := hs.Lookup(name)
		n := et.Expert + 1
		if et.Stacked() {
			n = int(e.Shape[0])
		}
		j.mtp[et.Layer] = max(j.mtp[et.Layer], n)
	}
	seen := map[string]string{}
	add := func(src string, t *outTensor) error {
		if prev, dup := seen[t.name]; dup {
			return j.ioErrf("tensors %q and %q would both become %q", prev, src, t.name)
		}
		seen[t.name] = src
		j.tensors = append(j.tensors, t)
		return nil
	}
	for _, name := range hs.Names() {
		e, _ := hs.Lookup(name)
		data := region{f: j.files[e.File], path: e.File, off: e.Offset(), n: e.Size()}
		var outs []*outTensor
		var err error
		kind, et := checkpoint.Classify(j.model, name)
		switch rt := checkpoint.ClassifyRouter(j.model, name); {
		case kind == checkpoint.Skipped:
			// Vision and audio towers: carried over as they are.
			outs = []*outTensor{j.whole(name, e.TensorInfo, data)}
		case kind == checkpoint.RoutedExpert:
			if outs, err = j.expertTensors(e.TensorInfo, et, data); err != nil {
				return err
			}
		case rt.Kind == checkpoint.RouterRows && !rt.MTP && j.keep[rt.Layer] != nil:
			t, err := j.routerRows(e.TensorInfo, rt.Layer, data)
			if err != nil {
				return err
			}
			outs = []*outTensor{t}
		case rt.Kind == checkpoint.RouterHash && !rt.MTP && j.keep[rt.Layer] != nil:
			t, err := j.hashTable(e.TensorInfo, rt.Layer, data)
			if err != nil {
				return err
			}
			outs = []*outTensor{t}
		default:
			outs = []*outTensor{j.whole(name, e.TensorInfo, data)}
		}
		for _, t := range outs {
			if err := add(name, t); err != nil {
				return err
			}
		}
	}
	slices.SortFunc(j.tensors, func(a, b *outTensor) int { return naturalCompare(a.name, b.name) })
	if err := j.readMetadata(); err != nil {
		return err
	}
	var err error
	if j.config, err = j.rewriteConfig(); err != nil {
		return err
	}
	if err := j.checkLoadable(); err != nil {
		return err
	}
	if j.expertMap, err = j.buildExpertMap(); err != nil {
		return err
	}
	if j.copies, err = filesToCopy(j.opts.Source); err != nil {
		return err
	}
	j.summarize()
	return nil
}

func (j *job) whole(name string, info safetensors.TensorInfo, data region) *outTensor {
	return &outTensor{name: name, dtype: info.DType, shape: slices.Clone(info.Shape), size: info.Size(),
		write: func(w io.Writer) error { return j.copyTo(w, data) }}
}

// region is a byte range of a source shard. Tensors are read with pread
// through small buffers rather than mapped: a mapping's touched pages
// count as the process's memory, and a copy touches every page.
type region struct {
	f      *os.File
	path   string
	off, n int64
}

func (r region) sub(off, n int64) region { return region{f: r.f, path: r.path, off: r.off + off, n: n} }

func (r region) readAt(buf []byte, off int64) error {
	if _, err := r.f.ReadAt(buf, r.off+off); err != nil {
		return fault.Mark(fmt.Errorf("read %s: %w", r.path, err), fault.ErrIO)
	}
	return nil
}

// copyTo streams r to w through the job's copy buffer.
func (j *job) copyTo(w io.Writer, r region) error {
	if j.buf == nil {
		j.buf = make([]byte, copyBuffer)
	}
	for done := int64(0); done < r.n; {
		n := min(int64(len(j.buf)), r.n-done)
		if err := r.readAt(j.buf[:n], done); err != nil {
			return err
		}
		if _, err := w.Write(j.buf[:n]); err != nil {
			return err
		}
		done += n
	}
	return nil
}

// load reads r into the job's slab buffer, valid until the next load.
func (j *job) load(r region) ([]byte, error) {
	if int64(cap(j.slab)) < r.n {
		j.slab = make([]byte, r.n)
	}
	b := j.slab[:r.n]
	return b, r.readAt(b, 0)
}

// keptOf returns the kept source experts of a routed-expert tensor's layer
// in new-id order.
func (j *job) keptOf(et checkpoint.ExpertTensor) []int {
	if et.MTP {
		return seq(j.mtp[et.Layer])
	}
	return j.keep[et.Layer]
}

// expertTensors turns one source routed-expert tensor into the engine
// layout's tensors of the kept experts.
func (j *job) expertTensors(info safetensors.TensorInfo, et checkpoint.ExpertTensor, data region) ([]*outTensor, error) {
	block, _ := checkpoint.BlockPrefix(j.model, info.Name)
	kept := j.keptOf(et)
	if !et.Stacked() {
		if et.Proj == checkpoint.GateUp {
			return nil, fault.Mark(fmt.Errorf("%s: tensor %q is a per-expert fused gate_up projection, a layout mach-prune does not know (it reads per-expert gate/up/down, fused stacked [E, 2I, H] and MLX stacked experts)", j.opts.Source, info.Name), fault.ErrUnsupported)
		}
		newID, ok := slices.BinarySearch(kept, et.Expert)
		if !ok {
			return nil, nil // a removed expert
		}
		t := j.whole(checkpoint.ExpertName(j.model, block, newID, et.Proj, et.Part), info, data)
		t.expert = true
		return []*outTensor{t}, nil
	}
	shape := info.Shape
	n := shape[0]
	if n <= 0 || len(shape) < 2 {
		return nil, j.ioErrf("stacked expert tensor %q has shape %v", info.Name, shape)
	}
	for _, e := range kept {
		if int64(e) >= n {
			return nil, j.ioErrf("tensor %q stacks %d experts, but expert %d is kept", info.Name, n, e)
		}
	}
	slab := info.Size() / n
	rest := shape[1:]
	elem := int64(info.DType.Bits() / 8)
	part, dtype := et.Part, info.DType
	outShape := slices.Clone(rest)
	if part == checkpoint.Blocks {
		// gpt-oss MXFP4 blocks [rows, in/32, 16] are the codes MLX packs
		// into U32 words [rows, in/8]: the same bytes, read as the
		// engine's packed weight (with the _scales as .scales).
		if len(rest) != 3 || rest[2] != 16 || info.DType != safetensors.U8 {
			return nil, j.ioErrf("MXFP4 blocks %q have %s shape %v, want U8 [E, rows, in/32, 16]", info.Name, info.DType, shape)
		}
		part, dtype = checkpoint.Weight, safetensors.U32
		outShape = []int64{rest[0], rest[1] * 4}
	}
	var outs []*outTensor
	emit := func(p checkpoint.Proj, newID int, shape []int64, size int64, write func(io.Writer) error) {
		outs = append(outs, &outTensor{name: checkpoint.ExpertName(j.model, block, newID, p, part), dtype: dtype,
			shape: shape, size: size, expert: true, write: write})
	}
	switch {
	case et.Transposed:
		// gpt-oss bf16/f32: [E, in, out] input-major; the engine layout is
		// [out, in]. gate_up's out axis interleaves gate (even) and up.
		if len(rest) != 2 || elem < 1 {
			return nil, j.ioErrf("input-major expert tensor %q has %s shape %v, want [E, in, out]", info.Name, info.DType, shape)
		}
		in, out := rest[0], rest[1]
		for newID, e := range kept {
			src := data.sub(int64(e)*slab, slab)
			if et.Proj != checkpoint.GateUp {
				emit(et.Proj, newID, []int64{out, in}, slab, j.transposeWriter(src, in, out, elem, 0, 1))
				continue
			}
			if out%2 != 0 {
				return nil, j.ioErrf("fused gate_up tensor %q has an odd output width %d", info.Name, out)
			}
			half := out / 2
			for k, p := range []checkpoint.Proj{checkpoint.Gate, checkpoint.Up} {
				first, step := int64(k)*half, int64(1)
				if et.Interleaved {
					first, step = int64(k), 2
				}
				emit(p, newID, []int64{half, in}, slab/2, j.transposeWriter(src, in, out, elem, first, step))
			}
		}
	case et.Proj == checkpoint.GateUp:
		// [E, 2I, …]: gate is the first half of the rows (or the even rows
		// when interleaved), up the rest.
		rows := rest[0]
		if rows%2 != 0 {
			return nil, j.ioErrf("fused gate_up tensor %q has an odd number of rows %d", info.Name, rows)
		}
		rowBytes := slab / rows
		outShape[0] = rows / 2
		for newID, e := range kept {
			src := data.sub(int64(e)*slab, slab)
			for k, p := range []checkpoint.Proj{checkpoint.Gate, checkpoint.Up} {
				if et.Interleaved {
					emit(p, newID, slices.Clone(outShape), slab/2, j.rowsWriter(src, rowBytes, int64(k), 2))
				} else {
					emit(p, newID, slices.Clone(outShape), slab/2, j.regionWriter(src.sub(int64(k)*slab/2, slab/2)))
				}
			}
		}
	default:
		for newID, e := range kept {
			emit(et.Proj, newID, slices.Clone(outShape), slab, j.regionWriter(data.sub(int64(e)*slab, slab)))
		}
	}
	return outs, nil
}

func (j *job) regionWriter(r region) func(io.Writer) error {
	return func(w io.Writer) error { return j.copyTo(w, r) }
}

// rowsWriter writes rows first, first+step, … of r (rows of rowBytes).
func (j *job) rowsWriter(r region, rowBytes, first, step int64) func(io.Writer) error {
	return func(w io.Writer) error {
		src, err := j.load(r)
		if err != nil {
			return err
		}
		for off := first * rowBytes; off < int64(len(src)); off += step * rowBytes {
			if _, err := w.Write(src[off : off+rowBytes]); err != nil {
				return err
			}
		}
		return nil
	}
}

// transposeWriter writes the transpose of the columns first, first+step, …
// of r, an [in, out] matrix of elem-byte values: the result is
// [len(columns), in].
func (j *job) transposeWriter(r region, in, out, elem, first, step int64) func(io.Writer) error {
	return func(w io.Writer) error {
		src, err := j.load(r)
		if err != nil {
			return err
		}
		row := make([]byte, in*elem)
		for c := first; c < out; c += step {
			for r := range in {
				copy(row[r*elem:(r+1)*elem], src[(r*out+c)*elem:(r*out+c+1)*elem])
			}
			if _, err := w.Write(row); err != nil {
				return err
			}
		}
		return nil
	}
}

// routerRows keeps the rows of the kept experts of a router tensor whose
// axis 0 indexes the layer's experts.
func (j *job) routerRows(info safetensors.TensorInfo, layer int, data region) (*outTensor, error) {
	n := int64(j.in.Experts.PerLayer[layer])
	if len(info.Shape) == 0 || info.Shape[0] != n {
		return nil, j.ioErrf("router tensor %q has shape %v, but layer %d has %d routed experts (want them on axis 0)", info.Name, info.Shape, layer, n)
	}
	kept := j.keep[layer]
	row := info.Size() / n
	shape := slices.Clone(info.Shape)
	shape[0] = int64(len(kept))
	return &outTensor{name: info.Name, dtype: info.DType, shape: shape, size: row * int64(len(kept)),
		write: func(w io.Writer) error {
			for _, e := range kept {
				if err := j.copyTo(w, data.sub(int64(e)*row, row)); err != nil {
					return err
				}
			}
			return nil
		}}, nil
}

// hashTable remaps a DeepSeek hash layer's token → expert table to the new
// ids. A table that routes tokens to a removed expert cannot be pruned
// that way.
func (j *job) hashTable(info safetensors.TensorInfo, layer int, r region) (*outTensor, error) {
	var width int
	switch info.DType {
	case safetensors.I64:
		width = 8
	case safetensors.I32:
		width = 4
	default:
		return nil, fault.Mark(fmt.Errorf("%s: hash table %q has dtype %s; mach-prune remaps I32 and I64 tables", j.opts.Source, info.Name, info.DType), fault.ErrUnsupported)
	}
	n := j.in.Experts.PerLayer[layer]
	data := make([]byte, r.n) // [vocab, k] ids: a few MB
	if err := r.readAt(data, 0); err != nil {
		return nil, err
	}
	newID := make([]int64, n)
	for i := range newID {
		newID[i] = -1
	}
	for i, e := range j.keep[layer] {
		newID[e] = int64(i)
	}
	get := func(i int) int64 {
		if width == 8 {
			return int64(binary.LittleEndian.Uint64(data[i*8:]))
		}
		return int64(int32(binary.LittleEndian.Uint32(data[i*4:])))
	}
	count := len(data) / width
	used := make([]bool, n)
	for i := range count {
		v := get(i)
		if v < 0 || v >= int64(n) {
			return nil, j.ioErrf("hash table %q routes to expert %d, but layer %d has %d experts", info.Name, v, layer, n)
		}
		used[v] = true
	}
	var lost []int
	nUsed := 0
	for e, u := range used {
		if u {
			nUsed++
			if newID[e] < 0 {
				lost = append(lost, e)
			}
		}
	}
	if len(lost) > 0 {
		return nil, planErrf("layer %d is a hash-routed layer: its table %s sends tokens to %d experts, and the plan removes %d of them (%s); keep every expert the table uses in that layer", layer, info.Name, nUsed, len(lost), ints(lost))
	}
	out := make([]byte, len(data))
	for i := range count {
		v := newID[get(i)]
		if width == 8 {
			binary.LittleEndian.PutUint64(out[i*8:], uint64(v))
		} else {
			binary.LittleEndian.PutUint32(out[i*4:], uint32(int32(v)))
		}
	}
	return &outTensor{name: info.Name, dtype: info.DType, shape: slices.Clone(info.Shape), size: info.Size(),
		write: func(w io.Writer) error { _, err := w.Write(out); return err }}, nil
}

// naturalCompare orders names with their digit runs compared as numbers,
// so layers.2 sorts before layers.10 and experts stay in id order.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := trimZeros(a[:da]), trimZeros(b[:db])
			if len(na) != len(nb) {
				return len(na) - len(nb)
			}
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
			if da != db {
				return da - db
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func trimZeros(s string) string {
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}
