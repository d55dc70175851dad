package expertstream

import "golang.org/x/sys/unix"

// openDirect opens path with the unified buffer cache disabled
// (F_NOCACHE), macOS's equivalent of O_DIRECT.
func openDirect(path string) (int, bool) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_NOCACHE, 1); err != nil {
		_ = unix.Close(fd)
		return -1, false
	}
	return fd, true
}

// dropCache: macOS has no posix_fadvise; buffered reads stay cached.
func dropCache(int, int64, int64) {}
