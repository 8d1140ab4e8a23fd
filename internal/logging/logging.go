// Package logging builds the process's zap logger from [global] and lets
// SIGUSR1 reopen its file (logrotate).
package logging

import (
	"fmt"
	"os"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logger is the error log plus what is needed to reopen or retune it.
type Logger struct {
	*zap.Logger
	Level zap.AtomicLevel
	sink  *reopenableFile
}

// Options are the [global] keys that shape the error log.
type Options struct {
	Level  string // debug | info | warn | error
	Format string // console | json
	Path   string // file path or "stderr"
}

// New builds a Logger.
func New(o Options) (*Logger, error) {
	lvl := zap.NewAtomicLevel()
	if err := lvl.UnmarshalText([]byte(o.Level)); err != nil {
		return nil, fmt.Errorf("log_level %q: %w", o.Level, err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "time"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch o.Format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	default:
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	l := &Logger{Level: lvl}
	var ws zapcore.WriteSyncer
	if o.Path == "" || o.Path == "stderr" {
		ws = zapcore.Lock(os.Stderr)
	} else {
		l.sink = &reopenableFile{path: o.Path}
		if err := l.sink.reopen(); err != nil {
			return nil, err
		}
		ws = l.sink
	}
	l.Logger = zap.New(zapcore.NewCore(enc, ws, lvl), zap.ErrorOutput(zapcore.Lock(os.Stderr)))
	return l, nil
}

// Reopen reopens the log file, if there is one.
func (l *Logger) Reopen() error {
	if l.sink == nil {
		return nil
	}
	return l.sink.reopen()
}

type reopenableFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
	// lost counts the lines lost since a write failed (a full disk);
	// failing is set meanwhile. The failure is told on stderr once, not
	// once per line: that would flood the journal of a host whose disk is
	// already full.
	lost    int64
	failing bool
}

func (r *reopenableFile) reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("error_log %s: %w", r.path, err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

func (r *reopenableFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.f.Write(p); err != nil {
		if !r.failing {
			r.failing = true
			fmt.Fprintf(os.Stderr, "vipgate: error_log %s: %v: error log lines are lost until it can be written again\n", r.path, err)
		}
		r.lost++
		return len(p), nil
	}
	if r.failing {
		r.failing = false
		fmt.Fprintf(os.Stderr, "vipgate: error_log %s: writing again, %d lines lost\n", r.path, r.lost)
		r.lost = 0
	}
	return len(p), nil
}

func (r *reopenableFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Sync()
}
