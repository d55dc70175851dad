//go:build !unix

package benchharness

func alloc(n int) ([]byte, func()) { return heapAlloc(n) }
