//go:build !unix

package logging

import "os"

// fileID is not available here: no journal.
func fileID(*os.File) (dev, ino uint64, ok bool) { return 0, 0, false }
