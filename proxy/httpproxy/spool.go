package httpproxy

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// spool takes a large response body from its server into an unlinked
// temporary file as fast as the server sends it, while the relay sends it
// on from the file at the client's pace: with proxy_buffering on (the
// default, as in nginx), a slow client does not hold the server, its
// connection or its worker thread for the whole download.
//
// One goroutine fills the file (fill, started by start); the relay's
// goroutine reads what is there (waitFor and the read end r). The relay
// owns the spool: it always ends with close, which waits for the filling
// goroutine.
type spool struct {
	w, r   *os.File // one unlinked file, opened twice: two offsets
	filled atomic.Int64
	more   chan struct{} // a signal (capacity 1): filled grew or fill ended
	done   chan struct{} // closed when fill returned
	err    error         // fill's error; read after done
	read   int64         // how much Read returned
	// tail is what fill read but could not write (errSpoolFull): the
	// relay sends it, then the rest straight from the server.
	tail []byte
}

// errSpoolFull ends a fill whose file cannot take more (disk full, file
// size limit): the response goes on without the spool, not cut.
var errSpoolFull = errors.New("proxy_buffering: the temporary file cannot grow")

// spoolFull tells a failed write to the file from other errors.
func spoolFull(err error) error {
	return errors.Join(errSpoolFull, err)
}

// spoolMin is the body size from which a response is spooled: smaller
// ones fit the kernel's socket buffers, which free the server as well.
const spoolMin = 1 << 20

// spoolMax bounds a spooled body (nginx's proxy_max_temp_file_size
// default, 1 GiB): a larger one is relayed at the client's pace.
const spoolMax = 1 << 30

// newSpool makes the temporary file in dir (os.TempDir when empty); it is
// unlinked at once, so nothing is left behind whatever happens.
func newSpool(dir string) (*spool, error) {
	w, err := os.CreateTemp(dir, "vipgate-body-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(w.Name())
	r, err := os.Open(w.Name())
	if err != nil {
		w.Close()
		return nil, err
	}
	return &spool{w: w, r: r, more: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// start runs fill on its own goroutine. fill writes the body to dst (the
// file) and calls progress after each piece written.
func (sp *spool) start(fill func(dst *os.File, progress func(int64)) error) {
	go func() {
		defer close(sp.done)
		defer sp.signal()
		sp.err = fill(sp.w, func(n int64) {
			sp.filled.Add(n)
			sp.signal()
		})
	}()
}

func (sp *spool) signal() {
	select {
	case sp.more <- struct{}{}:
	default:
	}
}

// waitFor blocks until the file holds more than sent bytes and returns how
// many more; 0 once fill ended with nothing more, with its error (nil
// when it ended at the body's end).
func (sp *spool) waitFor(sent int64) (int64, error) {
	for {
		if n := sp.filled.Load() - sent; n > 0 {
			return n, nil
		}
		select {
		case <-sp.more:
		case <-sp.done:
			if n := sp.filled.Load() - sent; n > 0 {
				return n, nil
			}
			return 0, sp.err
		}
	}
}

// Read reads the body from the file, waiting for fill: the spool is the
// response body for the net/http path's relay.
func (sp *spool) Read(p []byte) (int, error) {
	n, err := sp.waitFor(sp.read)
	if n == 0 {
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	k, err := sp.r.Read(p[:min(int64(len(p)), n)])
	sp.read += int64(k)
	return k, err
}

// fillFrom is the usual fill: it reads src into the file (through buf),
// n bytes or to its end when n < 0, re-arming the server's read timeout
// with arm before each read, and reports each piece as it is written (the
// client gets the bytes as they come, not in big steps). A write that
// fails keeps what was read in sp.tail and ends with errSpoolFull.
func (sp *spool) fillFrom(dst *os.File, progress func(int64), src io.Reader, n int64, buf []byte, arm func()) error {
	for n != 0 {
		b := buf
		if n > 0 && int64(len(b)) > n {
			b = b[:n]
		}
		arm()
		k, rerr := src.Read(b)
		if k > 0 {
			w, werr := dst.Write(b[:k])
			progress(int64(w))
			if werr != nil {
				sp.tail = append([]byte(nil), b[w:k]...)
				return spoolFull(werr)
			}
			if n > 0 {
				n -= int64(k)
			}
		}
		switch {
		case rerr == io.EOF && n < 0:
			return nil
		case rerr == io.EOF:
			return io.ErrUnexpectedEOF
		case rerr != nil:
			return rerr
		case k == 0:
			return io.ErrNoProgress
		}
	}
	return nil
}

// close waits for fill (the caller has made it end: the body is complete,
// or its source was closed) and closes the file.
func (sp *spool) close() {
	<-sp.done
	_ = sp.w.Close()
	_ = sp.r.Close()
}

// upstreamEnd ends a request's use of its server once: when the whole
// response is in (a spool's fill) or when the relay ends, whichever comes
// first. Then the balancer's slot is freed (max_conns, least_conn count
// the server busy no longer) and $upstream_response_time is taken, as
// nginx does once it has read the response, however long the client
// then takes.
type upstreamEnd struct {
	p     peer
	t0    time.Time
	ended atomic.Bool
	took  atomic.Int64 // nanoseconds
}

func (e *upstreamEnd) reset(p peer, t0 time.Time) {
	e.p, e.t0 = p, t0
	e.ended.Store(false)
	e.took.Store(0)
}

// end records the time and frees the server's slot, the first time only.
func (e *upstreamEnd) end() {
	if e.ended.CompareAndSwap(false, true) {
		e.took.Store(int64(time.Since(e.t0)))
		e.p.Release()
	}
}

// elapsed is $upstream_response_time, after end.
func (e *upstreamEnd) elapsed() time.Duration { return time.Duration(e.took.Load()) }
