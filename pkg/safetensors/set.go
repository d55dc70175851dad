package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/maniac-ai/mach/pkg/fault"
)

// IndexName is the shard index file of a sharded checkpoint.
const IndexName = "model.safetensors.index.json"

// maxIndexSize bounds the index JSON.
const maxIndexSize = 64 << 20

// Index is a parsed model.safetensors.index.json.
type Index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// ReadIndex reads and validates dir's shard index. Shard names must be plain
// file names inside dir.
func ReadIndex(dir string) (*Index, error) {
	p := filepath.Join(dir, IndexName)
	f, err := os.Open(p)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("open %s: %w", p, err), fault.ErrIO)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIndexSize+1))
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("read %s: %w", p, err), fault.ErrIO)
	}
	if len(b) > maxIndexSize {
		return nil, fault.Mark(fmt.Errorf("%s: larger than %d bytes", p, maxIndexSize), fault.ErrIO)
	}
	var idx Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fault.Mark(fmt.Errorf("%s: %w: %v", p, ErrFormat, err), fault.ErrIO)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fault.Mark(fmt.Errorf("%s: %w: empty weight_map", p, ErrFormat), fault.ErrIO)
	}
	for name, shard := range idx.WeightMap {
		if !plainName(shard) {
			return nil, fault.Mark(fmt.Errorf("%s: %w: tensor %q maps to %q, which is not a file name in the checkpoint directory", p, ErrFormat, name, shard), fault.ErrIO)
		}
	}
	return &idx, nil
}

func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`) && filepath.Base(s) == s
}

// ShardFiles returns the safetensors files of a checkpoint directory: the
// index's shards when model.safetensors.index.json exists, else every
// model*.safetensors file, sorted.
func ShardFiles(dir string) ([]string, *Index, error) {
	if _, err := os.Stat(filepath.Join(dir, IndexName)); err == nil {
		idx, err := ReadIndex(dir)
		if err != nil {
			return nil, nil, err
		}
		var files []string
		for _, s := range idx.WeightMap {
			files = append(files, s)
		}
		slices.Sort(files)
		files = slices.Compact(files)
		for i, s := range files {
			files[i] = filepath.Join(dir, s)
		}
		return files, idx, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "model*.safetensors"))
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fault.Mark(fmt.Errorf("%s: no model*.safetensors files and no %s", dir, IndexName), fault.ErrIO)
	}
	slices.Sort(files)
	return files, nil, nil
}

// Entry locates a tensor in a multi-file checkpoint.
type Entry struct {
	TensorInfo
	File string // path of the shard
	// DataOffset is the shard's data-buffer file offset; the tensor's
	// absolute file offset is DataOffset + Begin.
	DataOffset int64
}

// Offset returns the tensor's absolute offset in its file.
func (e Entry) Offset() int64 { return e.DataOffset + e.Begin }

// Headers is the merged header view of every shard of a checkpoint, read
// without mapping any data (for inspection).
type Headers struct {
	Dir     string
	Files   []string
	entries map[string]Entry
	names   []string
}

// ReadHeaders reads every shard header of dir. Tensor names must be unique
// across shards, and when an index exists every indexed tensor must be in
// the shard the index names.
func ReadHeaders(dir string) (*Headers, error) {
	files, idx, err := ShardFiles(dir)
	if err != nil {
		return nil, err
	}
	hs := &Headers{Dir: dir, Files: files, entries: map[string]Entry{}}
	for _, p := range files {
		h, err := ReadFileHeader(p)
		if err != nil {
			return nil, err
		}
		for _, t := range h.Tensors {
			if prev, dup := hs.entries[t.Name]; dup {
				return nil, fault.Mark(fmt.Errorf("%w: tensor %q is in both %s and %s", ErrFormat, t.Name, prev.File, p), fault.ErrIO)
			}
			hs.entries[t.Name] = Entry{TensorInfo: t, File: p, DataOffset: h.DataOffset}
		}
	}
	if idx != nil {
		for name, shard := range idx.WeightMap {
			e, ok := hs.entries[name]
			if !ok {
				return nil, fault.Mark(fmt.Errorf("%s: %w: index names tensor %q, which no shard holds", dir, ErrFormat, name), fault.ErrIO)
			}
			if filepath.Base(e.File) != shard {
				return nil, fault.Mark(fmt.Errorf("%s: %w: index puts %q in %s but it is in %s", dir, ErrFormat, name, shard, filepath.Base(e.File)), fault.ErrIO)
			}
		}
	}
	for n := range hs.entries {
		hs.names = append(hs.names, n)
	}
	slices.Sort(hs.names)
	return hs, nil
}

// Names returns every tensor name, sorted.
func (h *Headers) Names() []string { return h.names }

// Lookup returns the entry for name.
func (h *Headers) Lookup(name string) (Entry, bool) {
	e, ok := h.entries[name]
	return e, ok
}

// TotalBytes returns the sum of all tensor payloads.
func (h *Headers) TotalBytes() int64 {
	var n int64
	for _, e := range h.entries {
		n += e.Size()
	}
	return n
}

// Set is every shard of a checkpoint, memory-mapped.
type Set struct {
	*Headers
	files map[string]*File
}

// OpenSet maps every shard of dir.
func OpenSet(dir string) (*Set, error) {
	hs, err := ReadHeaders(dir)
	if err != nil {
		return nil, err
	}
	s := &Set{Headers: hs, files: map[string]*File{}}
	for _, p := range hs.Files {
		f, err := Open(p)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.files[p] = f
	}
	return s, nil
}

// ErrNotFound is returned by Bytes for a tensor the checkpoint lacks.
var ErrNotFound = errors.New("tensor not found")

// Bytes returns a tensor's bytes in place, with its description.
func (s *Set) Bytes(name string) ([]byte, TensorInfo, error) {
	e, ok := s.entries[name]
	if !ok {
		return nil, TensorInfo{}, fmt.Errorf("%s: %q: %w", s.Dir, name, ErrNotFound)
	}
	return s.files[e.File].TensorBytes(e.TensorInfo), e.TensorInfo, nil
}

// Close unmaps every shard.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	s.files = nil
	return errors.Join(errs...)
}
