package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The bulk load that copies nothing. iperf3 writes each byte into the
// socket from its own buffer and reads it out into another, on the load
// CPU, and the bytes it then hands the proxy were just written by that CPU:
// the load is the limit of every proxy, and data the proxy copies is warm
// in cache. A source that sendfile(2)s pages of memory and a sink that
// splice(2)s what it receives into /dev/null leave the load CPU the TCP
// work only, and the proxy meets bytes it has not seen, as it does when
// they come from a network card.

// runSink accepts connections on -listen and discards what each sends
// with splice into /dev/null (os.File.ReadFrom from a TCP connection),
// until -duration passes or it gets SIGTERM/SIGINT. A connection is closed
// when its peer has finished sending and every byte was taken.
func runSink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:5301", "address to serve on")
	duration := fs.Duration("duration", 30*time.Minute, "stop after this long")
	fs.Parse(args)

	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	return serveConns(*listen, *duration, func(c net.Conn) { _, _ = discard(null, c) })
}

// discard takes what c sends until it finishes, into null (/dev/null):
// through an *os.File the copy is splice(2), the pages go without being
// read.
func discard(null *os.File, c net.Conn) (int64, error) {
	return null.ReadFrom(c)
}

// runSource sends pages of memory to -addr with sendfile(2) for
// -duration, then finishes sending and waits until the receiver closes
// (a sink closes once it has taken every byte), so the rate it prints,
// "gbit_per_s bytes" as benchtool iperf does, counts only bytes that
// arrived.
func runSource(args []string) error {
	fs := flag.NewFlagSet("source", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:5301", "sink address (through a proxy)")
	duration := fs.Duration("duration", 5*time.Second, "send this long")
	size := fs.Int("size", 16<<20, "bytes of memory sent over and over")
	fs.Parse(args)

	sent, secs, err := send(*addr, *duration, *size)
	if err != nil {
		return err
	}
	fmt.Printf("%.3f %d\n", float64(sent)*8/secs/1e9, sent)
	return nil
}

// send is runSource's work: the bytes that arrived and the seconds from
// the first sent to the receiver's close.
func send(addr string, duration time.Duration, size int) (sent int64, secs float64, err error) {
	mem, err := memFile(size)
	if err != nil {
		return 0, 0, err
	}
	defer mem.Close()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	start := time.Now()
	end := start.Add(duration)
	// The deadline stops a sendfile waiting for room in the socket.
	tc.SetWriteDeadline(end)
	for time.Now().Before(end) {
		if _, err := mem.Seek(0, io.SeekStart); err != nil {
			return 0, 0, err
		}
		n, err := tc.ReadFrom(mem) // sendfile(2) from an *os.File
		sent += n
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return 0, 0, fmt.Errorf("after %d bytes: %w", sent, err)
		}
	}
	if err := tc.CloseWrite(); err != nil {
		return 0, 0, err
	}
	tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, tc); err != nil {
		return 0, 0, fmt.Errorf("waiting for the sink to take %d bytes: %w", sent, err)
	}
	if sent == 0 {
		return 0, 0, errors.New("sent nothing")
	}
	return sent, time.Since(start).Seconds(), nil
}

// memFile returns an anonymous in-memory file of size bytes (memfd), the
// pages sendfile sends.
func memFile(size int) (*os.File, error) {
	fd, err := unix.MemfdCreate("benchtool-source", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "benchtool-source")
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	for left := size; left > 0; left -= len(chunk) {
		if _, err := f.Write(chunk[:min(left, len(chunk))]); err != nil {
			f.Close()
			return nil, fmt.Errorf("fill memfd: %w", err)
		}
	}
	return f, nil
}
