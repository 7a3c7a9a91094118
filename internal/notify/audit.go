package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// auditLog appends one JSON line per event to a file.
type auditLog struct {
	path   string
	mu     sync.Mutex
	file   *os.File
	closed bool
}

func openAuditLog(path string) (*auditLog, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &auditLog{path: path, file: f}, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	return f, nil
}

// write appends ev as one line, in a single write so that lines from
// several processes sharing the file never interleave.
func (a *auditLog) write(_ context.Context, ev Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding event: %w", err)
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file == nil {
		return fmt.Errorf("audit log %q is closed", a.path)
	}
	if _, err := a.file.Write(line); err != nil {
		return fmt.Errorf("writing audit log: %w", err)
	}
	return nil
}

// reopen opens the path anew and swaps it in; on failure the old file
// stays in use.
func (a *auditLog) reopen() error {
	f, err := openAppend(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return f.Close()
	}
	old := a.file
	a.file = f
	a.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

func (a *auditLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	if a.file == nil {
		return nil
	}
	err := a.file.Close()
	a.file = nil
	return err
}
