package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFastConnectionsKeepNothingOfTheLast: the fast path reuses the state
// of finished client connections for new ones (fastConnPool). One after
// the other, connections from other clients (PROXY headers), with and
// without a body, must each be proxied with their own $remote_addr,
// $remote_port and body, and logged with their own address: nothing of
// the connection before. ($server_addr:$server_port stay the listener's,
// as nginx's: the header's destination is not the local address.)
func TestFastConnectionsKeepNothingOfTheLast(t *testing.T) {
	b := startBackend(t, "b")
	gw := startAppGateway(t, b.addr(), false, "accept_proxy_protocol = true",
		`proxy_set_header = { X-Client-Port = "$remote_port", X-Server = "$server_addr:$server_port" }`)
	const n = 30
	for i := range n {
		client := fmt.Sprintf("192.0.2.%d", i+1)
		clientPort := 40000 + i
		server := fmt.Sprintf("192.0.2.%d", 200+i%2)
		serverPort := 8000 + i%3
		req := "GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		body := ""
		if i%2 == 1 {
			body = fmt.Sprintf("body of request %d", i)
			req = fmt.Sprintf("POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		}
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "PROXY TCP4 %s %s %d %d\r\n%s", client, server, clientPort, serverPort, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			t.Fatalf("connection %d: %v", i, err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.Close()
		s := decodeSeen(t, string(answer))
		want := map[string]string{
			"X-Real-Ip":       client,
			"X-Forwarded-For": client,
			"X-Client-Port":   fmt.Sprint(clientPort),
			"X-Server":        gw.addr,
		}
		for k, v := range want {
			if got := s.Header.Get(k); got != v {
				t.Errorf("connection %d: %s = %q, want %q", i, k, got, v)
			}
		}
		if s.Body != body {
			t.Errorf("connection %d: the server got body %q, want %q", i, s.Body, body)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for strings.Count(gw.access.String(), "\n") < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(gw.access.String()), "\n")
	if len(lines) != n {
		t.Fatalf("%d access lines, want %d:\n%s", len(lines), n, gw.access.String())
	}
	// The line is written after the answer went out: a connection's line
	// may come after the next one's.
	logged := map[string]int{}
	for _, line := range lines {
		logged[strings.SplitN(line, " ", 2)[0]]++
	}
	for i := range n {
		if client := fmt.Sprintf("192.0.2.%d", i+1); logged[client] != 1 {
			t.Errorf("client %s has %d access lines, want 1:\n%s", client, logged[client], gw.access.String())
		}
	}
}
