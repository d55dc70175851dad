//go:build !linux && !darwin

package expertstream

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// layerFile reads one layer file with ordinary buffered reads: this
// platform has no direct I/O support in mach.
type layerFile struct {
	path string
	f    *os.File
}

func openLayer(path string, _ bool) (*layerFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &layerFile{path: path, f: f}, nil
}

func (f *layerFile) readAt(buf []byte, off int64) error {
	n, err := f.f.ReadAt(buf, off)
	if errors.Is(err, io.EOF) && n < len(buf) {
		return fmt.Errorf("read %s at %d: unexpected end of file (%d bytes short): %w", f.path, off, len(buf)-n, errTruncated)
	}
	if err != nil && n < len(buf) {
		return fmt.Errorf("read %s at %d: %w", f.path, off, err)
	}
	return nil
}

func (f *layerFile) isDirect() bool { return false }

func (f *layerFile) close() error { return f.f.Close() }

var errTruncated = errors.New("file truncated")

// arena is the cache slots' memory, aligned to 4 KiB within a larger
// allocation.
type arena struct{ b []byte }

func newArena(n int64) (*arena, error) {
	raw := make([]byte, n+4096)
	off := 0
	for (uintptrOf(raw)+uintptr(off))%4096 != 0 {
		off++
	}
	return &arena{b: raw[off : off+int(n)]}, nil
}

func (a *arena) bytes() []byte { return a.b }

func (a *arena) free() error { a.b = nil; return nil }
