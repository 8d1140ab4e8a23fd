package rawsys

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipgate/vipgate/internal/testutil"
)

// InqReader reports what is left behind each read: bytes not yet read,
// 1 for an end of stream still to be read, 0 for an empty socket, and -1
// when TCP_INQ is off.
func TestInqReaderTellsWhatIsLeft(t *testing.T) {
	client, server := testutil.TCPPair(t)
	raw, err := server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var r InqReader
	buf := make([]byte, 64)
	// read waits until the socket has something (the descriptor is
	// non-blocking), then reads at most max bytes.
	read := func(max int) (n, left int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			var err error
			_ = raw.Control(func(fd uintptr) { n, left, err = r.Read(int(fd), buf[:max]) })
			if err != unix.EAGAIN {
				if err != nil {
					t.Fatal(err)
				}
				return n, left
			}
			if time.Now().After(deadline) {
				t.Fatal("nothing to read")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	_, _ = client.Write([]byte("abc"))
	if n, left := read(64); n != 3 || left != -1 {
		t.Fatalf("TCP_INQ off: read %d, left %d; want 3, -1", n, left)
	}
	var eerr error
	_ = raw.Control(func(fd uintptr) { eerr = EnableInq(int(fd)) })
	if eerr != nil {
		t.Fatalf("TCP_INQ: %v", eerr)
	}
	_, _ = client.Write([]byte("abcdef"))
	time.Sleep(50 * time.Millisecond)
	if n, left := read(2); n != 2 || left != 4 {
		t.Fatalf("read %d, left %d; want 2, 4", n, left)
	}
	if n, left := read(64); n != 4 || left != 0 {
		t.Fatalf("read %d, left %d; want 4, 0 (socket empty)", n, left)
	}
	_, _ = client.Write([]byte("xy"))
	_ = client.(*net.TCPConn).CloseWrite()
	time.Sleep(50 * time.Millisecond)
	if n, left := read(64); n != 2 || left != 1 {
		t.Fatalf("read %d, left %d; want 2, 1 (the end of the stream still to read)", n, left)
	}
	if n, _ := read(64); n != 0 {
		t.Fatalf("read %d, want the end of the stream", n)
	}
}
