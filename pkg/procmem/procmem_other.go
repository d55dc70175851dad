//go:build !linux

package procmem

func read() (Usage, error) { return Usage{}, ErrUnsupported }
