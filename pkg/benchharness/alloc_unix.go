//go:build unix

package benchharness

import "syscall"

// alloc maps n anonymous bytes outside the Go heap (the heap when mapping
// fails).
func alloc(n int) ([]byte, func()) {
	mem, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return heapAlloc(n)
	}
	return mem, func() { _ = syscall.Munmap(mem) }
}
