// Package hostmem reports the host's memory without cgo: total RAM and the
// memory available to a new process (Linux: /proc/meminfo MemAvailable,
// capped by a cgroup v2 memory limit; macOS: sysctl page counts).
package hostmem

import (
	"errors"
	"fmt"
)

// Info is a memory snapshot in bytes.
type Info struct {
	Total     uint64
	Available uint64
	// Source says how Available was measured, for reports.
	Source string
}

// ErrUnsupported is returned on systems hostmem cannot measure.
var ErrUnsupported = errors.New("available memory is not measurable on this system")

// Read returns the host's memory.
func Read() (Info, error) {
	info, err := read()
	if err != nil {
		return Info{}, fmt.Errorf("hostmem: %w", err)
	}
	return info, nil
}
