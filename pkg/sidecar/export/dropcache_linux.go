package export

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to forget a written (and fsynced) layer file's
// pages: an export of a large checkpoint would otherwise fill the page
// cache with bytes the streaming store reads with direct I/O anyway.
func dropCache(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
