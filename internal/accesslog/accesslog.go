// Package accesslog writes one line per request or stream, in nginx's
// combined-like format, to a file that SIGUSR1 reopens (logrotate).
//
// Like nginx's `access_log path buffer=size flush=time`, lines can be
// gathered in memory and written together: one write(2) for many requests
// instead of one each. A write never splits a line, so a reader (tail -f, a
// log shipper) sees only whole lines.
package accesslog

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Settings are the [global] keys that shape the access log.
type Settings struct {
	// Target is a path, "stdout", "stderr", or "off" ("" is "off").
	Target string
	// Buffer is how many bytes of lines may wait in memory; 0 writes each
	// line at once.
	Buffer int
	// Flush is the longest a buffered line waits before it is written.
	Flush time.Duration
}

// defaultFlush is how long buffered lines may wait when Settings.Flush is 0.
const defaultFlush = time.Second

// Writer is a thread-safe line writer. A nil *Writer, or one whose target
// is "off", discards everything; On tells callers whether formatting a line
// is worth it.
type Writer struct {
	mu       sync.Mutex
	settings Settings
	out      io.Writer // nil: off
	file     *os.File  // set when out is a file this Writer opened
	buf      []byte    // lines not written yet (buffered mode)
	bufLines uint64    // lines in buf
	timer    *time.Timer
	closed   bool
	on       atomic.Bool // out != nil, read without the lock on every request

	// report is told when writes start failing (err) and when they work
	// again (nil): one log line per outage, not one per lost line.
	report  func(target string, err error)
	failing bool

	written, lost atomic.Uint64 // lines, for the admin API
}

// Counters returns how many lines were written and how many were lost
// because writing failed (lines discarded while the log is "off" are
// neither).
func (w *Writer) Counters() (written, lost uint64) {
	if w == nil {
		return 0, 0
	}
	return w.written.Load(), w.lost.Load()
}

// Open returns a Writer for s.
func Open(s Settings) (*Writer, error) {
	w := &Writer{}
	if err := w.Apply(s); err != nil {
		return nil, err
	}
	return w, nil
}

// New wraps an io.Writer, each line written at once (tests).
func New(out io.Writer) *Writer {
	w := &Writer{out: out}
	w.on.Store(out != nil)
	return w
}

// NewBuffered wraps an io.Writer with a buffer of size bytes flushed after
// flush (tests).
func NewBuffered(out io.Writer, size int, flush time.Duration) *Writer {
	w := New(out)
	w.settings = Settings{Buffer: size, Flush: flush}
	return w
}

// ReportErrors makes w call report when writing starts to fail (with the
// error) and when it works again (with nil). report runs with w's lock
// held: it must not call w.
func (w *Writer) ReportErrors(report func(target string, err error)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.report = report
}

// Target returns the target lines go to ("off" when none).
func (w *Writer) Target() string {
	if w == nil {
		return "off"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.targetLocked()
}

func (w *Writer) targetLocked() string {
	if w.settings.Target == "" {
		return "off"
	}
	return w.settings.Target
}

// On reports whether lines are written anywhere.
func (w *Writer) On() bool {
	return w != nil && w.on.Load()
}

// Write writes one line; line must end with '\n'. In buffered mode the
// line is copied, so the caller may reuse it.
func (w *Writer) Write(line []byte) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out == nil {
		return
	}
	size := w.settings.Buffer
	if size <= 0 {
		w.writeLocked(line, 1)
		return
	}
	if len(w.buf)+len(line) > size {
		w.flushLocked()
	}
	if len(line) > size {
		w.writeLocked(line, 1)
		return
	}
	if len(w.buf) == 0 {
		w.armLocked()
	}
	w.buf = append(w.buf, line...)
	w.bufLines++
}

// armLocked starts the flush timer for the first line of an empty buffer.
func (w *Writer) armLocked() {
	flush := w.settings.Flush
	if flush <= 0 {
		flush = defaultFlush
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(flush, w.timedFlush)
		return
	}
	w.timer.Reset(flush)
}

func (w *Writer) timedFlush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
}

// flushLocked writes the buffered lines in one write.
func (w *Writer) flushLocked() {
	if len(w.buf) == 0 {
		return
	}
	if w.out != nil {
		w.writeLocked(w.buf, w.bufLines)
	}
	w.bufLines = 0
	if cap(w.buf) > 4*w.settings.Buffer {
		w.buf = nil // do not keep a buffer grown for a burst of long lines
	} else {
		w.buf = w.buf[:0]
	}
	if w.timer != nil {
		w.timer.Stop()
	}
}

// writeLocked writes b, which holds that many whole lines.
func (w *Writer) writeLocked(b []byte, lines uint64) {
	_, err := w.out.Write(b)
	if err != nil {
		w.lost.Add(lines)
	} else {
		w.written.Add(lines)
	}
	if (err != nil) == w.failing {
		return
	}
	w.failing = err != nil
	if w.report != nil {
		w.report(w.targetLocked(), err)
	}
}

// Flush writes the buffered lines now.
func (w *Writer) Flush() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
}

// Reopen reopens a file target (after logrotate moved it away). Buffered
// lines go to the old file first: they belong to the period it covers.
func (w *Writer) Reopen() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	s := w.settings
	w.mu.Unlock()
	if !isPath(s.Target) {
		w.Flush()
		return nil
	}
	return w.switchTo(s, true)
}

// Apply makes s the settings (a reload): buffered lines are written to the
// old target, then the new one is used. When the new target cannot be
// opened, nothing changes and the error says why.
func (w *Writer) Apply(s Settings) error {
	if s.Target == "" {
		s.Target = "off"
	}
	w.mu.Lock()
	same := s.Target == w.settings.Target && w.out != nil
	w.mu.Unlock()
	return w.switchTo(s, !same)
}

// switchTo installs s; with reopen, a file target is opened anew.
func (w *Writer) switchTo(s Settings, reopen bool) error {
	var out io.Writer
	var f *os.File
	if reopen {
		switch s.Target {
		case "off":
		case "stdout":
			out = os.Stdout
		case "stderr":
			out = os.Stderr
		default:
			var err error
			f, err = os.OpenFile(s.Target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
			if err != nil {
				return fmt.Errorf("access log %s: %w", s.Target, err)
			}
			out = f
		}
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		if f != nil {
			_ = f.Close()
		}
		return fmt.Errorf("access log %s: writer closed", s.Target)
	}
	w.flushLocked()
	var old *os.File
	if reopen {
		old = w.file
		w.out, w.file = out, f
		w.on.Store(out != nil)
	}
	w.settings = s
	w.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

func isPath(target string) bool {
	return target != "" && target != "off" && target != "stdout" && target != "stderr"
}

// Close writes the buffered lines and closes a file target; later lines
// are discarded.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.closed = true
	w.out = nil
	w.on.Store(false)
	if w.file == nil {
		return nil
	}
	err := w.file.Close()
	w.file = nil
	return err
}
