package httpproxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Protocol switches (WebSocket) on both front ends: the plain HTTP/1.1
// fast path and the net/http path (TLS here).

// dialFront connects to the gateway, over TLS (HTTP/1.1) when withTLS.
func dialFront(t *testing.T, addr string, withTLS bool) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if withTLS {
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const wsRequest = "GET /ws HTTP/1.1\r\nHost: front.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

// Bytes a client sends behind its upgrade request before the 101 (in the
// same write, or while the server takes its time) reach the server in
// order, then what it sends after the 101, as through nginx. On the
// net/http path a frame holding a LF was taken for a next request,
// refused, and from then on everything the client sent was dropped: a
// silently one-way tunnel.
func TestBytesBeforeThe101ReachTheServer(t *testing.T) {
	frame := "\x81\x06hello\n"
	const later = "later"
	for _, withTLS := range []bool{false, true} {
		for _, sameWrite := range []bool{true, false} {
			got := make(chan string, 1)
			addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
				if _, err := http.ReadRequest(br); err != nil {
					got <- "request: " + err.Error()
					return
				}
				time.Sleep(300 * time.Millisecond)
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
				b := make([]byte, len(frame)+len(later))
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, err := io.ReadFull(br, b)
				got <- fmt.Sprintf("%q err=%v", b[:n], err)
			})
			gw := startAppGateway(t, addr, withTLS, "", "")
			c := dialFront(t, gw.addr, withTLS)
			_ = c.SetDeadline(time.Now().Add(4 * time.Second))
			if sameWrite {
				_, _ = io.WriteString(c, wsRequest+frame)
			} else {
				_, _ = io.WriteString(c, wsRequest)
				time.Sleep(100 * time.Millisecond)
				_, _ = io.WriteString(c, frame)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("TLS %v: upgrade: %v, %v", withTLS, resp, err)
			}
			_, _ = io.WriteString(c, later)
			want := fmt.Sprintf("%q err=<nil>", frame+later)
			select {
			case s := <-got:
				if s != want {
					t.Errorf("TLS %v, same write %v: server received %s, want %s", withTLS, sameWrite, s, want)
				}
			case <-time.After(4 * time.Second):
				t.Fatalf("TLS %v: server never reported", withTLS)
			}
		}
	}
}

// An upgrade the server refuses leaves an HTTP connection: a request the
// client pipelined behind it is served as a request.
func TestRequestBehindARefusedUpgradeIsServed(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				body := "plain " + req.URL.Path
				fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			}
		})
		gw := startAppGateway(t, addr, withTLS, "", "")
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(4 * time.Second))
		_, _ = io.WriteString(c, wsRequest+"GET /next HTTP/1.1\r\nHost: front.example\r\n\r\n")
		br := bufio.NewReader(c)
		var got []string
		for i := 0; i < 2; i++ {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("TLS %v: response %d: %v (got %q)", withTLS, i+1, err, got)
			}
			body, _ := io.ReadAll(resp.Body)
			got = append(got, fmt.Sprintf("%d %s", resp.StatusCode, body))
		}
		if want := []string{"400 plain /ws", "400 plain /next"}; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("TLS %v: answers %q, want %q", withTLS, got, want)
		}
	}
}

// Bytes around the 101 count in the access log and the server's counters:
// a greeting the server sent with its 101, and what the client sent right
// behind its request.
func TestWebSocketBytesAroundThe101AreCounted(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\ngreeting")
			b := make([]byte, 12)
			if _, err := io.ReadFull(br, b); err != nil {
				return
			}
			_, _ = c.Write(b)
			_, _ = br.ReadByte() // until the client closes
		})
		gw := startAppGateway(t, addr, withTLS, "", "")
		c := dialFront(t, gw.addr, withTLS)
		_ = c.SetDeadline(time.Now().Add(4 * time.Second))
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: front.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nab")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("TLS %v: upgrade: %v %v", withTLS, resp, err)
		}
		_, _ = io.WriteString(c, "0123456789")
		got := make([]byte, len("greeting")+12)
		if _, err := io.ReadFull(br, got); err != nil || string(got) != "greetingab0123456789" {
			t.Fatalf("TLS %v: client got %q, %v", withTLS, got, err)
		}
		c.Close()
		deadline := time.Now().Add(3 * time.Second)
		for !strings.Contains(gw.access.String(), "GET /ws") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if line := gw.access.String(); !strings.Contains(line, `"GET /ws HTTP/1.1" 101 20 `) {
			t.Errorf("TLS %v: access log %q: want status 101 and 20 bytes sent to the client", withTLS, line)
		}
		for _, st := range gw.table.Statuses() {
			if st.Address == addr && (st.BytesSent != 12 || st.BytesReceived != 20) {
				t.Errorf("TLS %v: server counters: sent %d, received %d; want 12 and 20", withTLS, st.BytesSent, st.BytesReceived)
			}
		}
	}
}

// switchSeen sends raw on a new connection, with a server that answers any
// Upgrade request with 101 and then echoes; it returns the status the
// client got and the Upgrade header the server saw.
func switchSeen(t *testing.T, withTLS bool, raw string) (status int, serverSawUpgrade, serverSawSettings string) {
	t.Helper()
	saw := make(chan [2]string, 1)
	addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		saw <- [2]string{req.Header.Get("Upgrade"), req.Header.Get("Http2-Settings")}
		if u := req.Header.Get("Upgrade"); u != "" {
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", u)
			_, _ = io.Copy(c, br)
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	gw := startAppGateway(t, addr, withTLS, "", "")
	c := dialFront(t, gw.addr, withTLS)
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-saw:
		serverSawUpgrade, serverSawSettings = s[0], s[1]
	case <-time.After(3 * time.Second):
	}
	return resp.StatusCode, serverSawUpgrade, serverSawSettings
}

// RFC 9110 7.8: a server ignores Upgrade in an HTTP/1.0 request; the fast
// path did, the net/http path switched.
func TestNoProtocolSwitchForHTTP10(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		st, up, _ := switchSeen(t, withTLS, "GET /ws HTTP/1.0\r\nHost: front.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		if st == http.StatusSwitchingProtocols || up != "" {
			t.Errorf("TLS %v: HTTP/1.0 request: status %d, server saw Upgrade %q; want no switch", withTLS, st, up)
		}
	}
}

// Upgrade: h2c is not passed on: tunnelled, it would let a client speak
// HTTP/2 to the server past the proxy's routing (h2c smuggling).
// HTTP2-Settings is a connection field and never passes either.
func TestH2CUpgradeIsNotTunnelled(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		for _, conn := range []string{"Upgrade, HTTP2-Settings", "Upgrade"} {
			st, up, settings := switchSeen(t, withTLS, "GET /public HTTP/1.1\r\nHost: front.example\r\nConnection: "+conn+"\r\n"+
				"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
			if st == http.StatusSwitchingProtocols || up != "" || settings != "" {
				t.Errorf("TLS %v, Connection %q: status %d, server saw Upgrade %q, HTTP2-Settings %q; want none passed on",
					withTLS, conn, st, up, settings)
			}
		}
	}
}

// A WebSocket client that stops reading while it keeps sending is closed
// after send_timeout, as nginx does (its send_timeout timer on a blocked
// write to the client): its writes kept the tunnel's idle limit from ever
// passing, and the server's messages piled up behind a write that never
// ended. The same holds for a server that stops reading while the client
// writes (proxy_send_timeout).
func TestTunnelWriteBlockedPastSendTimeoutEndsIt(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		for _, clientStalls := range []bool{true, false} {
			ended := make(chan struct{})
			addr, _ := rawUpstream(t, func(br *bufio.Reader, c net.Conn) {
				defer close(ended)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
				_ = c.SetDeadline(time.Now().Add(8 * time.Second))
				if clientStalls { // the server talks, reading what comes
					go func() { _, _ = io.Copy(io.Discard, br) }()
					chunk := make([]byte, 64<<10)
					for {
						if _, err := c.Write(chunk); err != nil {
							return
						}
					}
				}
				// The server stops reading and talks now and then.
				for {
					time.Sleep(100 * time.Millisecond)
					if _, err := io.WriteString(c, "x"); err != nil {
						return
					}
				}
			})
			gw := startAppGateway(t, addr, withTLS, `send_timeout = "1s"`, `proxy_send_timeout = "1s"
proxy_read_timeout = "30s"`)
			c := dialFront(t, gw.addr, withTLS)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(c, wsRequest)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("TLS %v: upgrade: %v %v", withTLS, resp, err)
			}
			start := time.Now()
			if !clientStalls {
				go func() { _, _ = io.Copy(io.Discard, br) }()
			}
			// The client writes on: a small message every 100 ms while
			// it stalls, as much as it can while the server does.
			msg := []byte("m")
			if !clientStalls {
				msg = make([]byte, 64<<10)
			}
			for time.Since(start) < 6*time.Second {
				if _, err := c.Write(msg); err != nil {
					break
				}
				if clientStalls {
					time.Sleep(100 * time.Millisecond)
				}
			}
			select {
			case <-ended:
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("TLS %v, client stalls %v: tunnel ended after %v, want about 1 s", withTLS, clientStalls, d)
				}
			case <-time.After(3 * time.Second):
				t.Errorf("TLS %v, client stalls %v: tunnel still open %v after a write to the %s blocked with a 1 s limit",
					withTLS, clientStalls, time.Since(start).Round(time.Second), map[bool]string{true: "client", false: "server"}[clientStalls])
			}
		}
	}
}
