//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package hub

import "os"

// tryLock is a no-op where flock is not available: concurrent downloads of
// one blob are then not serialized across processes.
func tryLock(*os.File) (bool, error) { return true, nil }

func unlock(*os.File) {}
