//go:build !linux

package sdnotify

import "errors"

// MonotonicUsec would return CLOCK_MONOTONIC in microseconds; systemd runs
// on Linux only, so elsewhere it is an error.
func MonotonicUsec() (uint64, error) {
	return 0, errors.New("CLOCK_MONOTONIC: only read on Linux")
}
