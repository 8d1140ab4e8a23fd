package accesslog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder keeps each write(2) the Writer makes, to check batching.
type recorder struct {
	mu     sync.Mutex
	writes []string
	fail   error
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

func (r *recorder) setFail(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

func line(i int) []byte { return fmt.Appendf(nil, "127.0.0.1 - - request %04d\n", i) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUnbufferedWritesEachLineAtOnce(t *testing.T) {
	rec := &recorder{}
	w := New(rec)
	for i := range 3 {
		w.Write(line(i))
	}
	if got := rec.get(); len(got) != 3 || got[2] != string(line(2)) {
		t.Fatalf("unbuffered writer made writes %q, want one per line", got)
	}
}

func TestBufferedLinesGoOutTogetherAndWhole(t *testing.T) {
	rec := &recorder{}
	size := 10 * len(line(0)) // ten lines fit exactly
	w := NewBuffered(rec, size, time.Hour)
	defer w.Close()
	for i := range 25 {
		w.Write(line(i))
	}
	got := rec.get()
	if len(got) != 2 {
		t.Fatalf("25 lines with room for 10: %d writes, want 2 (the third batch waits)", len(got))
	}
	var want strings.Builder
	for i := range 20 {
		want.Write(line(i))
	}
	if strings.Join(got, "") != want.String() {
		t.Fatalf("written %q, want the first 20 lines in order", strings.Join(got, ""))
	}
	for _, wr := range got {
		if len(wr) > size || !strings.HasSuffix(wr, "\n") {
			t.Errorf("a write of %d bytes (buffer %d) does not end a line: %q", len(wr), size, wr)
		}
	}
	w.Flush()
	if got := rec.get(); len(got) != 3 || !strings.HasPrefix(got[2], string(line(20))) {
		t.Fatalf("Flush: writes %q, want the last 5 lines in a third write", got)
	}
}

func TestBufferedLineWaitsAtMostFlush(t *testing.T) {
	rec := &recorder{}
	w := NewBuffered(rec, 64<<10, 100*time.Millisecond)
	defer w.Close()
	start := time.Now()
	w.Write(line(1))
	if got := rec.get(); len(got) != 0 {
		t.Fatalf("a buffered line was written at once: %q", got)
	}
	waitFor(t, "the flush timer", func() bool { return len(rec.get()) == 1 })
	if waited := time.Since(start); waited < 90*time.Millisecond {
		t.Errorf("line written after %s, before the 100ms flush", waited)
	}
	// The timer is armed again by the next line of an empty buffer.
	w.Write(line(2))
	waitFor(t, "the second flush", func() bool { return len(rec.get()) == 2 })
}

func TestLineLongerThanBufferKeepsOrder(t *testing.T) {
	rec := &recorder{}
	w := NewBuffered(rec, 64, time.Hour)
	defer w.Close()
	w.Write([]byte("short\n"))
	long := []byte(strings.Repeat("x", 100) + "\n")
	w.Write(long)
	got := rec.get()
	if len(got) != 2 || got[0] != "short\n" || got[1] != string(long) {
		t.Fatalf("writes %q, want the buffered line, then the long one", got)
	}
}

func TestCloseWritesBufferedLinesAndDiscardsLater(t *testing.T) {
	rec := &recorder{}
	w := NewBuffered(rec, 64<<10, time.Hour)
	w.Write(line(1))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Write(line(2))
	if got := rec.get(); len(got) != 1 || got[0] != string(line(1)) {
		t.Fatalf("after Close: writes %q, want only the line buffered before it", got)
	}
	if w.On() {
		t.Error("a closed writer reports On")
	}
}

func TestWriteFailuresAreReportedOncePerOutage(t *testing.T) {
	rec := &recorder{}
	w := New(rec)
	var reports []error
	w.ReportErrors(func(target string, err error) { reports = append(reports, err) })
	w.Write(line(1))
	disk := errors.New("no space left on device")
	rec.setFail(disk)
	for i := range 100 {
		w.Write(line(i))
	}
	rec.setFail(nil)
	w.Write(line(2))
	w.Write(line(3))
	if len(reports) != 2 || !errors.Is(reports[0], disk) || reports[1] != nil {
		t.Fatalf("reports %v, want the error once, then nil once when writing works again", reports)
	}
	if written, lost := w.Counters(); written != 3 || lost != 100 {
		t.Errorf("counters: %d written, %d lost; want 3 and 100", written, lost)
	}
}

// A failed flush loses every line of the buffer, and the counter says so.
func TestBufferedLinesLostAreCounted(t *testing.T) {
	rec := &recorder{}
	w := NewBuffered(rec, 64<<10, time.Hour)
	defer w.Close()
	for i := range 7 {
		w.Write(line(i))
	}
	rec.setFail(errors.New("input/output error"))
	w.Flush()
	rec.setFail(nil)
	w.Write(line(8))
	w.Flush()
	if written, lost := w.Counters(); written != 1 || lost != 7 {
		t.Errorf("counters: %d written, %d lost; want 1 and 7", written, lost)
	}
}

func TestReopenSendsBufferedLinesToTheRotatedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	w, err := Open(Settings{Target: path, Buffer: 64 << 10, Flush: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(line(1))
	if err := os.Rename(path, path+".1"); err != nil { // logrotate
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Write(line(2))
	w.Flush()
	if b, _ := os.ReadFile(path + ".1"); string(b) != string(line(1)) {
		t.Errorf("rotated file holds %q, want the line buffered before the rotation", b)
	}
	if b, _ := os.ReadFile(path); string(b) != string(line(2)) {
		t.Errorf("new file holds %q, want the line written after it", b)
	}
}

func TestApplyChangesTargetBufferAndOff(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	w, err := Open(Settings{Target: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.On() {
		t.Fatal(`access_log = "off" reports On`)
	}
	w.Write(line(0)) // discarded

	if err := w.Apply(Settings{Target: a, Buffer: 64 << 10, Flush: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if !w.On() {
		t.Fatal("a path target does not report On")
	}
	w.Write(line(1))
	if got, _ := os.ReadFile(a); len(got) != 0 {
		t.Fatalf("buffered line written before a flush: %q", got)
	}
	// A reload to another path: the buffered line stays with the old file.
	if err := w.Apply(Settings{Target: b}); err != nil {
		t.Fatal(err)
	}
	w.Write(line(2)) // unbuffered now
	if got, _ := os.ReadFile(a); string(got) != string(line(1)) {
		t.Errorf("old target holds %q, want the line buffered before the reload", got)
	}
	if got, _ := os.ReadFile(b); string(got) != string(line(2)) {
		t.Errorf("new target holds %q, want the line written after the reload, at once", got)
	}

	// A target that cannot be opened changes nothing.
	bad := filepath.Join(dir, "missing", "c.log")
	if err := w.Apply(Settings{Target: bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Apply(%s) = %v, want an error naming the path", bad, err)
	}
	w.Write(line(3))
	if got, _ := os.ReadFile(b); !bytes.HasSuffix(got, line(3)) || w.Target() != b {
		t.Errorf("after a failed Apply lines go to %s (file holds %q), want %s", w.Target(), got, b)
	}

	if err := w.Apply(Settings{Target: "off"}); err != nil {
		t.Fatal(err)
	}
	w.Write(line(4))
	if w.On() {
		t.Error("On after switching the access log off")
	}
	if got, _ := os.ReadFile(b); bytes.Contains(got, line(4)) {
		t.Error("a line written after switching off reached the old file")
	}
}

// Concurrent writers (every request's goroutine) must never interleave
// inside a line, and no line may be lost.
func TestConcurrentWritersKeepLinesWhole(t *testing.T) {
	rec := &recorder{}
	w := NewBuffered(rec, 4096, 5*time.Millisecond)
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				w.Write(fmt.Appendf(nil, "writer %d line %04d\n", g, i))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, wr := range rec.get() {
		if !strings.HasSuffix(wr, "\n") {
			t.Fatalf("a write ends inside a line: %q", wr)
		}
		for l := range strings.Lines(wr) {
			var g, i int
			if _, err := fmt.Sscanf(l, "writer %d line %d\n", &g, &i); err != nil {
				t.Fatalf("mangled line %q: %v", l, err)
			}
			seen[l] = true
		}
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct lines written, want %d", len(seen), writers*each)
	}
}
