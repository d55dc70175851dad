package hostmem

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

func read() (Info, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	info, err := parseMeminfo(io.LimitReader(f, 1<<20))
	if err != nil {
		return Info{}, err
	}
	// In a container the cgroup limit, not the host, is what a process
	// can use.
	if limit, used, ok := cgroupV2("/sys/fs/cgroup"); ok && limit < info.Total {
		free := uint64(0)
		if used < limit {
			free = limit - used
		}
		info.Total = limit
		if free < info.Available {
			info.Available = free
			info.Source = "cgroup memory.max - memory.current"
		}
	}
	return info, nil
}

// parseMeminfo reads MemTotal and MemAvailable (kB) from /proc/meminfo.
func parseMeminfo(r io.Reader) (Info, error) {
	var info Info
	var haveTotal, haveAvail bool
	s := bufio.NewScanner(r)
	for s.Scan() {
		key, rest, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil || n > 1<<50 {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		switch key {
		case "MemTotal":
			info.Total, haveTotal = n, true
		case "MemAvailable":
			info.Available, haveAvail = n, true
		}
	}
	if err := s.Err(); err != nil {
		return Info{}, err
	}
	if !haveTotal || !haveAvail {
		return Info{}, fmt.Errorf("/proc/meminfo lacks MemTotal or MemAvailable")
	}
	info.Source = "/proc/meminfo MemAvailable"
	return info, nil
}

// cgroupV2 reads memory.max and memory.current of the process's cgroup
// root mount; ok is false when there is no limit.
func cgroupV2(root string) (limit, used uint64, ok bool) {
	max, err := readSmall(root + "/memory.max")
	if err != nil || max == "max" {
		return 0, 0, false
	}
	limit, err = strconv.ParseUint(max, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	cur, err := readSmall(root + "/memory.current")
	if err == nil {
		used, _ = strconv.ParseUint(cur, 10, 64)
	}
	return limit, used, true
}

func readSmall(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	return string(bytes.TrimSpace(b)), err
}
