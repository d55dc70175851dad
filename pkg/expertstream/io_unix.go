//go:build linux || darwin

package expertstream

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// layerFile reads one layer file, bypassing the page cache where it can:
// O_DIRECT on Linux, F_NOCACHE on macOS. When the file system refuses
// direct I/O (tmpfs, some network file systems) it falls back to ordinary
// pread and drops the pages it read (posix_fadvise DONTNEED), so the page
// cache does not hold a second copy of what the expert cache holds.
type layerFile struct {
	path string
	mu   sync.RWMutex
	fd   int
	// direct: reads bypass the page cache.
	direct bool
}

// openLayer opens path; direct asks for direct I/O.
func openLayer(path string, direct bool) (*layerFile, error) {
	if direct {
		if fd, ok := openDirect(path); ok {
			return &layerFile{path: path, fd: fd, direct: true}, nil
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &layerFile{path: path, fd: fd}, nil
}

// readAt fills buf from off. buf, its length and off are multiples of
// the direct-I/O alignment when the file is direct.
func (f *layerFile) readAt(buf []byte, off int64) error {
	f.mu.RLock()
	fd, direct := f.fd, f.direct
	err := preadFull(fd, buf, off)
	f.mu.RUnlock()
	if err == nil {
		if !direct {
			dropCache(fd, off, int64(len(buf)))
		}
		return nil
	}
	if direct && errors.Is(err, unix.EINVAL) {
		// The file system accepted O_DIRECT at open but not this read.
		if ferr := f.fallback(fd); ferr != nil {
			return ferr
		}
		return f.readAt(buf, off)
	}
	return fmt.Errorf("read %s at %d: %w", f.path, off, err)
}

// fallback reopens the file for buffered reads (once).
func (f *layerFile) fallback(old int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd != old || !f.direct {
		return nil // another reader switched already
	}
	fd, err := unix.Open(f.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: f.path, Err: err}
	}
	_ = unix.Close(f.fd)
	f.fd, f.direct = fd, false
	return nil
}

func (f *layerFile) isDirect() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.direct
}

func (f *layerFile) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return err
}

func preadFull(fd int, buf []byte, off int64) error {
	for len(buf) > 0 {
		n, err := unix.Pread(fd, buf, off)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return fmt.Errorf("unexpected end of file (%d bytes short): %w", len(buf), errTruncated)
		}
		buf, off = buf[n:], off+int64(n)
	}
	return nil
}

var errTruncated = errors.New("file truncated")

// arena is page-aligned anonymous memory for the cache slots, outside the
// Go heap (it can be gigabytes, and direct I/O needs aligned buffers).
type arena struct{ b []byte }

func newArena(n int64) (*arena, error) {
	if n <= 0 {
		return &arena{}, nil
	}
	b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("allocate %d bytes for the expert cache: %w", n, err)
	}
	return &arena{b: b}, nil
}

func (a *arena) bytes() []byte { return a.b }

func (a *arena) free() error {
	if a.b == nil {
		return nil
	}
	err := unix.Munmap(a.b)
	a.b = nil
	return err
}
