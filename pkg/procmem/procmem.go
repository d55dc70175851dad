// Package procmem reads this process's resident memory, split into
// file-backed pages (the mmapped checkpoint) and anonymous pages (heap,
// activations, KV cache), and tracks the peak of each across samples.
package procmem

import (
	"errors"
	"sync"
)

// Usage is a snapshot of resident memory, in bytes.
type Usage struct {
	// RSS is the resident set; Anon, File and Shmem are its parts.
	RSS, Anon, File, Shmem int64
	// PeakRSS is the kernel's high-water mark of RSS (VmHWM).
	PeakRSS int64
}

// ErrUnsupported is returned where the split is not measurable.
var ErrUnsupported = errors.New("procmem: resident memory split not available on this system")

// Read returns the current usage.
func Read() (Usage, error) { return read() }

// Peak tracks the largest values seen by Sample.
type Peak struct {
	mu  sync.Mutex
	max Usage
	ok  bool
}

// Sample reads the usage and folds it into the peak; it returns the
// current reading.
func (p *Peak) Sample() (Usage, error) {
	u, err := Read()
	if err != nil {
		return u, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ok = true
	p.max.RSS = max(p.max.RSS, u.RSS)
	p.max.Anon = max(p.max.Anon, u.Anon)
	p.max.File = max(p.max.File, u.File)
	p.max.Shmem = max(p.max.Shmem, u.Shmem)
	p.max.PeakRSS = max(p.max.PeakRSS, u.PeakRSS)
	return u, nil
}

// Max returns the peaks (each field's own maximum) and whether any sample
// succeeded.
func (p *Peak) Max() (Usage, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max, p.ok
}
