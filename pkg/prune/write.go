package prune

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/maniac-ai/mach/pkg/atomicfile"
	"github.com/maniac-ai/mach/pkg/fault"
	"github.com/maniac-ai/mach/pkg/modelconfig"
	"github.com/maniac-ai/mach/pkg/safetensors"
)

// planShards splits the (sorted) tensors into shards of at most max bytes
// of data; a larger tensor gets a shard of its own.
func planShards(ts []*outTensor, max int64) [][]*outTensor {
	var shards [][]*outTensor
	var cur []*outTensor
	var size int64
	for _, t := range ts {
		if len(cur) > 0 && size+t.size > max {
			shards = append(shards, cur)
			cur, size = nil, 0
		}
		cur = append(cur, t)
		size += t.size
	}
	if len(cur) > 0 || len(shards) == 0 {
		shards = append(shards, cur)
	}
	return shards
}

// shardName is the Hugging Face shard name, 0-based i of n.
func shardName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n)
}

// write builds the output in a temporary directory beside it and renames
// it into place.
func (j *job) write(ctx context.Context) (err error) {
	out, err := filepath.Abs(j.opts.Output)
	if err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	parent := filepath.Dir(out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fault.Mark(fmt.Errorf("create %s: %w", parent, err), fault.ErrIO)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".mach-prune-*")
	if err != nil {
		return fault.Mark(fmt.Errorf("create a temporary directory beside %s: %w", out, err), fault.ErrIO)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	shards := planShards(j.tensors, j.opts.MaxShardSize)
	total := j.sum.BytesAfter
	var done int64
	weightMap := map[string]string{}
	for i, shard := range shards {
		name := shardName(i, len(shards))
		err := writeShard(ctx, filepath.Join(tmp, name), shard, j.meta, func(t *outTensor) {
			done += t.size
			if j.opts.Progress != nil {
				j.opts.Progress(Progress{Done: done, Total: total, Shard: i + 1, Shards: len(shards), Tensor: t.name})
			}
		})
		if err != nil {
			return err
		}
		for _, t := range shard {
			weightMap[t.name] = name
		}
	}
	for _, f := range j.copies {
		if err := copyFile(filepath.Join(j.opts.Source, f), filepath.Join(tmp, f)); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(tmp, modelconfig.FileName), j.config); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(tmp, ExpertMapName), j.expertMap); err != nil {
		return err
	}
	// The index is the manifest: written last.
	idx, err := json.MarshalIndent(map[string]any{
		"metadata":   map[string]any{"total_size": total},
		"weight_map": weightMap,
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(tmp, safetensors.IndexName), append(idx, '\n')); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return install(tmp, out, parent)
}

// install renames the finished directory tmp to out, replacing an empty
// directory or (checked by checkPaths under Force) an old checkpoint.
func install(tmp, out, parent string) error {
	old := ""
	if ents, err := os.ReadDir(out); err == nil {
		if len(ents) == 0 {
			if err := os.Remove(out); err != nil {
				return fault.Mark(err, fault.ErrIO)
			}
		} else {
			old = tmp + ".old"
			if err := os.Rename(out, old); err != nil {
				return fault.Mark(fmt.Errorf("move the old %s aside: %w", out, err), fault.ErrIO)
			}
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		if old != "" {
			_ = os.Rename(old, out)
		}
		return fault.Mark(fmt.Errorf("rename into %s: %w", out, err), fault.ErrIO)
	}
	if err := atomicfile.SyncDir(parent); err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fault.Mark(fmt.Errorf("remove the replaced checkpoint %s: %w", old, err), fault.ErrIO)
		}
	}
	return nil
}

type headerEntry struct {
	DType       safetensors.DType `json:"dtype"`
	Shape       []int64           `json:"shape"`
	DataOffsets [2]int64          `json:"data_offsets"`
}

// writeShard streams one safetensors file: the header, then each tensor's
// bytes. Wider dtypes come first so every tensor stays aligned to its
// element size (the data starts at a multiple of 8).
func writeShard(ctx context.Context, path string, ts []*outTensor, meta map[string]string, done func(*outTensor)) (err error) {
	order := slices.Clone(ts)
	slices.SortStableFunc(order, func(a, b *outTensor) int { return b.dtype.Bits() - a.dtype.Bits() })
	hdr := map[string]any{"__metadata__": meta}
	var off int64
	for _, t := range order {
		shape := t.shape
		if shape == nil {
			shape = []int64{}
		}
		hdr[t.name] = headerEntry{DType: t.dtype, Shape: shape, DataOffsets: [2]int64{off, off + t.size}}
		off += t.size
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	for (8+len(js))%8 != 0 {
		js = append(js, ' ')
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fault.Mark(fmt.Errorf("close %s: %w", path, cerr), fault.ErrIO)
		}
	}()
	bw := bufio.NewWriterSize(f, 4<<20)
	ioErr := func(err error) error { return fault.Mark(fmt.Errorf("write %s: %w", path, err), fault.ErrIO) }
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(js)))
	if _, err := bw.Write(n[:]); err != nil {
		return ioErr(err)
	}
	if _, err := bw.Write(js); err != nil {
		return ioErr(err)
	}
	for _, t := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		cw := &countWriter{w: bw}
		if err := t.write(cw); err != nil {
			return ioErr(err)
		}
		if cw.n != t.size {
			// A bug in the tensor plan, never bad input: the plan checks shapes.
			return fmt.Errorf("prune: tensor %q: wrote %d bytes, planned %d", t.name, cw.n, t.size)
		}
		done(t)
	}
	if err := bw.Flush(); err != nil {
		return ioErr(err)
	}
	if err := f.Sync(); err != nil {
		return fault.Mark(fmt.Errorf("fsync %s: %w", path, err), fault.ErrIO)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeFile writes and fsyncs a small file.
func writeFile(path string, data []byte) error {
	return syncedCopy(path, func(w io.Writer) error { _, err := w.Write(data); return err })
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	defer in.Close()
	return syncedCopy(dst, func(w io.Writer) error { _, err := io.Copy(w, in); return err })
}

func syncedCopy(path string, fill func(io.Writer) error) (err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fault.Mark(err, fault.ErrIO)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			err = fault.Mark(fmt.Errorf("write %s: %w", path, err), fault.ErrIO)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	return f.Sync()
}
