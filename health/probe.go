package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"

	proxyproto "github.com/pires/go-proxyproto"
)

// maxCheckBody bounds how much of a check response is read before closing.
const maxCheckBody = 64 << 10

// probeFor returns the check of spec against address. Each call of the
// probe opens a new connection and must end within its context's deadline;
// any error (refused, reset, timeout, garbage) is a failed check.
func (m *Manager) probeFor(spec CheckSpec, address string) func(context.Context) error {
	if spec.Type == "tcp" {
		return tcpProbe(address, spec.ProxyProtocol)
	}
	return m.httpProbe(spec, address)
}

func (m *Manager) httpProbe(spec CheckSpec, address string) func(context.Context) error {
	path := spec.Path
	if path == "" {
		path = "/"
	}
	url := "http://" + address + path // for messages
	// The URL is built, not parsed: a zoned server address
	// ("[fe80::1%eth0]:8080") is no valid URL text.
	target, err := neturl.Parse("http://check" + path)
	if err != nil {
		return func(context.Context) error { return fmt.Errorf("GET %s: %w", url, err) }
	}
	target.Host = address
	expect := spec.ExpectStatus
	if len(expect) == 0 {
		expect = [][2]int{{200, 399}}
	}
	transport := m.transport
	switch spec.ProxyProtocol {
	case "v1":
		transport = m.transportV1
	case "v2":
		transport = m.transportV2
	}
	client := &http.Client{
		Transport: transport,
		// A redirect is an answer: its status is checked, not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://check/", nil)
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		u := *target
		req.URL, req.Host = &u, ""
		if spec.Host != "" {
			req.Host = spec.Host
		}
		req.Header.Set("User-Agent", "vipgate-health-check")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		// Read (a bounded part of) the body: a backend that stalls or resets
		// mid-body fails the check within its timeout.
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxCheckBody))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("GET %s: status %d, reading body: %w", url, resp.StatusCode, err)
		}
		for _, r := range expect {
			if resp.StatusCode >= r[0] && resp.StatusCode <= r[1] {
				return nil
			}
		}
		return fmt.Errorf("GET %s: status %d, want %s", url, resp.StatusCode, rangesString(expect))
	}
}

func rangesString(rs [][2]int) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r[0] == r[1] {
			parts[i] = strconv.Itoa(r[0])
		} else {
			parts[i] = strconv.Itoa(r[0]) + "-" + strconv.Itoa(r[1])
		}
	}
	return strings.Join(parts, ",")
}

// tcpProbe connects; with proxyProtocol it first sends a header that says
// "no client address" (v1 PROXY UNKNOWN, v2 LOCAL), so servers that require
// a PROXY header accept the check without logging an error, then closes.
func tcpProbe(address, proxyProtocol string) func(context.Context) error {
	header := localProxyHeader(proxyProtocol)
	var d net.Dialer
	return func(ctx context.Context) error {
		conn, err := d.DialContext(ctx, "tcp", address)
		if err != nil {
			return fmt.Errorf("tcp connect %s: %w", address, err)
		}
		defer conn.Close()
		if header == nil {
			return nil
		}
		if deadline, ok := ctx.Deadline(); ok {
			conn.SetWriteDeadline(deadline)
		}
		if _, err := conn.Write(header); err != nil {
			return fmt.Errorf("tcp %s: send PROXY %s header: %w", address, proxyProtocol, err)
		}
		return nil
	}
}

// localProxyHeader is the PROXY header of a connection with no client
// behind it (v1 UNKNOWN, v2 LOCAL), nil without proxyProtocol.
func localProxyHeader(proxyProtocol string) []byte {
	switch proxyProtocol {
	case "v1":
		return mustFormat(&proxyproto.Header{Version: 1, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UNSPEC})
	case "v2":
		return mustFormat(&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC})
	}
	return nil
}

func mustFormat(h *proxyproto.Header) []byte {
	b, err := h.Format()
	if err != nil {
		panic("health: formatting a constant PROXY header: " + err.Error())
	}
	return b
}
