package procmem

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

func read() (Usage, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		var dst *int64
		switch string(line[:i]) {
		case "VmRSS":
			dst = &u.RSS
		case "VmHWM":
			dst = &u.PeakRSS
		case "RssAnon":
			dst = &u.Anon
		case "RssFile":
			dst = &u.File
		case "RssShmem":
			dst = &u.Shmem
		default:
			continue
		}
		f := bytes.Fields(line[i+1:])
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			continue
		}
		*dst = n * 1024 // the kernel reports kB
		found++
	}
	if found < 4 {
		return u, ErrUnsupported
	}
	return u, nil
}
