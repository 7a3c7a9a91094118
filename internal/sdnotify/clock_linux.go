package sdnotify

import (
	"fmt"
	"syscall"
	"unsafe"
)

// MonotonicUsec returns CLOCK_MONOTONIC in microseconds, the clock
// systemd compares MONOTONIC_USEC with.
func MonotonicUsec() (uint64, error) {
	var ts syscall.Timespec
	const clockMonotonic = 1 // CLOCK_MONOTONIC in <linux/time.h>
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, fmt.Errorf("clock_gettime(CLOCK_MONOTONIC): %w", e)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3, nil
}
