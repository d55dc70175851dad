//go:build !linux

package export

// dropCache is a no-op where posix_fadvise is unavailable.
func dropCache(string) {}
