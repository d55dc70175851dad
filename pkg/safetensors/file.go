package safetensors

import (
	"fmt"
	"os"

	"github.com/maniac-ai/mach/pkg/fault"
)

// File is an open safetensors file whose data is memory-mapped read-only.
type File struct {
	Path   string
	header *Header
	data   []byte // the whole file, mapped
	unmap  func() error
}

// Open maps path and validates its header. The caller must Close it; slices
// returned by Bytes are valid until then.
func Open(path string) (*File, error) {
	f, size, h, err := openHeader(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, unmap, err := mapFile(f, size)
	if err != nil {
		return nil, fault.Mark(fmt.Errorf("map %s: %w", path, err), fault.ErrIO)
	}
	return &File{Path: path, header: h, data: data, unmap: unmap}, nil
}

// ReadFileHeader reads and validates only the header of path.
func ReadFileHeader(path string) (*Header, error) {
	f, _, h, err := openHeader(path)
	if err != nil {
		return nil, err
	}
	f.Close()
	return h, nil
}

// openHeader opens path and reads and validates its header; on success the
// caller closes the file.
func openHeader(path string) (*os.File, int64, *Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, fault.Mark(fmt.Errorf("open %s: %w", path, err), fault.ErrIO)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, fault.Mark(fmt.Errorf("stat %s: %w", path, err), fault.ErrIO)
	}
	h, err := ReadHeader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, 0, nil, fault.Mark(fmt.Errorf("%s: %w", path, err), fault.ErrIO)
	}
	return f, st.Size(), h, nil
}

// Header returns the validated header.
func (f *File) Header() *Header { return f.header }

// Tensor returns the description of the tensor named name.
func (f *File) Tensor(name string) (TensorInfo, bool) { return f.header.Lookup(name) }

// Bytes returns the raw bytes of a tensor, in place in the mapping.
func (f *File) Bytes(name string) ([]byte, error) {
	t, ok := f.header.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.Path, name)
	}
	return f.TensorBytes(t), nil
}

// TensorBytes returns the bytes of t, which must come from this file.
func (f *File) TensorBytes(t TensorInfo) []byte {
	off := f.header.DataOffset
	return f.data[off+t.Begin : off+t.End : off+t.End]
}

// Close unmaps the file.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap, f.data = nil, nil
	return err
}
