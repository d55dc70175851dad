package expertstream

import "golang.org/x/sys/unix"

// openDirect opens path with O_DIRECT; false when the file system refuses.
func openDirect(path string) (int, bool) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECT, 0)
	if err != nil {
		return -1, false
	}
	return fd, true
}

// dropCache evicts a range a buffered read brought into the page cache.
func dropCache(fd int, off, n int64) { _ = unix.Fadvise(fd, off, n, unix.FADV_DONTNEED) }
