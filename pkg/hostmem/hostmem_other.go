//go:build !linux && !darwin

package hostmem

func read() (Info, error) { return Info{}, ErrUnsupported }
