// Package accesslog writes one line per request or stream, in nginx's
// combined-like format, to a file that SIGUSR1 reopens (logrotate).
package accesslog

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Writer is a thread-safe line writer. A nil *Writer discards everything,
// so callers need no "is logging on" branch.
type Writer struct {
	mu   sync.Mutex
	path string // "" when w is stdout/stderr (not reopenable)
	out  io.Writer
	file *os.File
}

// Open returns a Writer for target: a path, "stdout", "stderr", or "off" (nil).
func Open(target string) (*Writer, error) {
	switch target {
	case "off", "":
		return nil, nil
	case "stdout":
		return &Writer{out: os.Stdout}, nil
	case "stderr":
		return &Writer{out: os.Stderr}, nil
	}
	w := &Writer{path: target}
	if err := w.Reopen(); err != nil {
		return nil, err
	}
	return w, nil
}

// New wraps an io.Writer (tests).
func New(out io.Writer) *Writer { return &Writer{out: out} }

// Write writes one line; line must end with '\n'.
func (w *Writer) Write(line []byte) {
	if w == nil {
		return
	}
	w.mu.Lock()
	_, _ = w.out.Write(line)
	w.mu.Unlock()
}

// Reopen reopens a file target (after logrotate moved it away).
func (w *Writer) Reopen() error {
	if w == nil || w.path == "" {
		return nil
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("access log %s: %w", w.path, err)
	}
	w.mu.Lock()
	old := w.file
	w.file, w.out = f, f
	w.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// Close closes a file target.
func (w *Writer) Close() error {
	if w == nil || w.file == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.file.Close()
}
