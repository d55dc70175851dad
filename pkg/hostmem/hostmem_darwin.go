package hostmem

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// read uses sysctl: hw.memsize for the total, and for the available memory
// the pages macOS can hand to a new process without swapping: free,
// speculative, purgeable and file-backed (external) pageable pages. This
// approximates Activity Monitor's "memory available".
func read() (Info, error) {
	total, err := sysctlUint64("hw.memsize")
	if err != nil {
		return Info{}, err
	}
	page := uint64(syscall.Getpagesize())
	var pages uint64
	for _, name := range []string{"vm.page_free_count", "vm.page_speculative_count", "vm.page_purgeable_count", "vm.page_pageable_external_count"} {
		n, err := syscall.SysctlUint32(name)
		if err != nil {
			if name == "vm.page_free_count" {
				return Info{}, fmt.Errorf("sysctl %s: %w", name, err)
			}
			continue
		}
		pages += uint64(n)
	}
	avail := pages * page
	if avail > total {
		avail = total
	}
	return Info{Total: total, Available: avail, Source: "sysctl free+speculative+purgeable+file-backed pages"}, nil
}

// sysctlUint64 decodes a 64-bit sysctl. syscall.Sysctl returns the raw
// bytes as a string and drops one trailing NUL, so the value may be short.
func sysctlUint64(name string) (uint64, error) {
	s, err := syscall.Sysctl(name)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %w", name, err)
	}
	var b [8]byte
	copy(b[:], s)
	return binary.LittleEndian.Uint64(b[:]), nil
}
