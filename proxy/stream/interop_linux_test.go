package stream

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipgate/vipgate/internal/testutil"
)

// daemon runs a peer program in the foreground and kills it (by PID) at
// cleanup or when the test asks.
type daemon struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	once sync.Once
	done chan struct{}
}

func startDaemon(t *testing.T, name string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(name, args...), out: &lockedBuffer{}, done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, strings.Join(d.out.Lines(), "\n"))
		}
	})
	return d
}

func (d *daemon) kill() {
	d.once.Do(func() {
		d.cmd.Process.Kill()
		<-d.done
	})
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string, d *daemon) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-d.done:
			t.Fatalf("%s exited before listening on %s:\n%s", d.cmd.Path, addr, strings.Join(d.out.Lines(), "\n"))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requireFile skips (or fails in CI) when a file a peer needs is missing.
func requireFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv(testutil.RequireRootEnv) == "1" {
		t.Fatalf("this test needs %s (make test installs it)", path)
	}
	t.Skipf("needs %s", path)
}

// clientCases are the clients whose address a PROXY receiver must see: a
// loopback IPv4 address other than the proxy's own, and IPv6.
var clientCases = []struct {
	name, listenHost, clientIP string
}{
	{"ipv4", "127.0.0.1", "127.0.0.2"},
	{"ipv6", "::1", "::1"},
}

func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestProxyProtocolInteropNginx: nginx's stream module, listening with
// proxy_protocol, reports the client address our header carries.
func TestProxyProtocolInteropNginx(t *testing.T) {
	nginx := testutil.RequireCommand(t, "nginx")
	module := "/usr/lib/nginx/modules/ngx_stream_module.so"
	requireFile(t, module)
	dir := t.TempDir()
	addr := freeAddr(t)
	conf := fmt.Sprintf(`load_module %s;
daemon off;
master_process off;
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 64; }
stream {
    server {
        listen %s proxy_protocol;
        return "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port\n";
    }
}
`, module, dir, dir, addr)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	waitListening(t, addr, d)

	for _, version := range []string{"v1", "v2"} {
		for _, cc := range clientCases {
			t.Run(version+" "+cc.name, func(t *testing.T) {
				p := newProxy(t, cc.listenHost, func(l string) string {
					return streamConf(l, addr, fmt.Sprintf("proxy_protocol = %q", version), "")
				})
				c := dialFrom(t, cc.clientIP, p.listen)
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					t.Fatalf("read nginx's answer: %v", err)
				}
				client := c.LocalAddr().(*net.TCPAddr)
				server := c.RemoteAddr().(*net.TCPAddr)
				want := fmt.Sprintf("%s %d %s %d\n", client.IP, client.Port, server.IP, server.Port)
				if line != want {
					t.Errorf("nginx saw %q, want %q", line, want)
				}
			})
		}
	}
}

// TestProxyProtocolInteropHAProxy: haproxy with accept-proxy reports the
// client address our header carries (answered by an http-request return).
func TestProxyProtocolInteropHAProxy(t *testing.T) {
	haproxy := testutil.RequireCommand(t, "haproxy")
	dir := t.TempDir()
	addr := freeAddr(t)
	conf := fmt.Sprintf(`global
    maxconn 64
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    bind %s accept-proxy
    http-request return status 200 content-type text/plain lf-string "%%[src] %%[src_port] %%[dst] %%[dst_port]"
`, addr)
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, haproxy, "-db", "-f", cfg)
	waitListening(t, addr, d)

	for _, version := range []string{"v1", "v2"} {
		for _, cc := range clientCases {
			t.Run(version+" "+cc.name, func(t *testing.T) {
				p := newProxy(t, cc.listenHost, func(l string) string {
					return streamConf(l, addr, fmt.Sprintf("proxy_protocol = %q", version), "")
				})
				c := dialFrom(t, cc.clientIP, p.listen)
				fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
				resp, err := readAllWithin(t, c, 3*time.Second)
				if err != nil {
					t.Fatalf("read haproxy's answer: %v", err)
				}
				_, body, _ := strings.Cut(string(resp), "\r\n\r\n")
				client := c.LocalAddr().(*net.TCPAddr)
				server := c.RemoteAddr().(*net.TCPAddr)
				want := fmt.Sprintf("%s %d %s %d", client.IP, client.Port, server.IP, server.Port)
				if body != want {
					t.Errorf("haproxy saw %q, want %q (response %q)", body, want, resp)
				}
			})
		}
	}
}

// broker is one mosquitto on a loopback port.
type broker struct {
	*daemon
	addr string
}

func startBroker(t *testing.T, mosquitto string) *broker {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n", port)
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, mosquitto, "-c", path)
	waitListening(t, addr, d)
	return &broker{daemon: d, addr: addr}
}

// subscriber is a mosquitto_sub whose received messages are read line by line.
type subscriber struct {
	*daemon
	lines chan string
}

func startSubscriber(t *testing.T, sub, addr, topic string) *subscriber {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(sub, "-h", host, "-p", port, "-t", topic, "-q", "1", "-k", "5", "-i", fmt.Sprintf("sub-%d", time.Now().UnixNano()))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &subscriber{daemon: &daemon{cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}, lines: make(chan string, 100)}
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r := bufio.NewScanner(stdout)
		for r.Scan() {
			s.lines <- r.Text()
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.kill)
	return s
}

// publishUntilReceived publishes msg until s prints it (a subscriber that
// is reconnecting may miss the first attempts).
func publishUntilReceived(t *testing.T, pub, addr, topic, msg string, s *subscriber, within time.Duration) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	deadline := time.Now().Add(within)
	for {
		out, err := exec.Command(pub, "-h", host, "-p", port, "-t", topic, "-q", "1", "-m", msg).CombinedOutput()
		if err != nil {
			t.Logf("mosquitto_pub: %v: %s", err, out)
		}
		wait := time.After(300 * time.Millisecond)
	read:
		for {
			select {
			case line := <-s.lines:
				if line == msg {
					return
				}
			case <-s.done:
				t.Fatalf("mosquitto_sub exited: %s", strings.Join(s.out.Lines(), "\n"))
			case <-wait:
				break read
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber did not receive %q within %v", msg, within)
		}
	}
}

// TestMosquittoThroughStreamProxy: two Debian mosquitto brokers behind one
// upstream; messages flow through the proxy, the clients of a killed
// broker reconnect to the other, and a subscriber keeps its connection
// through 10 reloads.
func TestMosquittoThroughStreamProxy(t *testing.T) {
	mosquitto := testutil.RequireCommand(t, "mosquitto")
	sub := testutil.RequireCommand(t, "mosquitto_sub")
	pub := testutil.RequireCommand(t, "mosquitto_pub")
	a, b := startBroker(t, mosquitto), startBroker(t, mosquitto)
	brokers := map[string]*broker{a.addr: a, b.addr: b}
	// ip_hash: every local client lands on the same broker, as the brokers
	// here are not clustered.
	conf := func(l string) string {
		return streamConf(l, "mqtt", `proxy_timeout = "30s"`, upstreamConf("mqtt", a.addr, b.addr)+"balance = \"ip_hash\"\n")
	}
	p := newProxy(t, "127.0.0.1", func(l string) string { return fixUpstreamOrder(conf(l)) })

	t.Run("messages flow", func(t *testing.T) {
		s := startSubscriber(t, sub, p.listen, "vipgate/test")
		publishUntilReceived(t, pub, p.listen, "vipgate/test", "hello", s, 5*time.Second)
	})

	t.Run("subscriber stays connected through 10 reloads", func(t *testing.T) {
		p.reload(fixUpstreamOrder(conf(p.listen))) // a generation of its own
		s := startSubscriber(t, sub, p.listen, "vipgate/reload")
		publishUntilReceived(t, pub, p.listen, "vipgate/reload", "before", s, 5*time.Second)
		first := p.cur.Load()
		waitActive(t, first, 1) // the subscriber's stream; the publishers' have ended
		for i := range 10 {
			p.reload(fixUpstreamOrder(conf(p.listen)))
			publishUntilReceived(t, pub, p.listen, "vipgate/reload", fmt.Sprintf("after reload %d", i+1), s, 5*time.Second)
		}
		if got := first.Active(); got != 1 {
			t.Errorf("first generation has %d streams after 10 reloads, want the subscriber's (it reconnected?)", got)
		}
	})

	t.Run("killed broker's clients reconnect to the other", func(t *testing.T) {
		s := startSubscriber(t, sub, p.listen, "vipgate/failover")
		publishUntilReceived(t, pub, p.listen, "vipgate/failover", "before kill", s, 5*time.Second)
		var used *broker
		for _, srv := range p.cur.Load().routes[p.listen].upstream.Servers() {
			if srv.Status().ActiveConns > 0 {
				used = brokers[srv.Address()]
			}
		}
		if used == nil {
			t.Fatal("no broker has the subscriber's connection")
		}
		used.kill()
		publishUntilReceived(t, pub, p.listen, "vipgate/failover", "after kill", s, 15*time.Second)
		if st := p.upstreamStats("mqtt"); st.ConnectFailures < 1 {
			t.Errorf("counters %+v: the dead broker's refused connect was not counted", st)
		}
	})
}

// fixUpstreamOrder moves the balance key into the upstream table (the
// helper appends it after the servers).
func fixUpstreamOrder(conf string) string {
	conf = strings.Replace(conf, "balance = \"ip_hash\"\n", "", 1)
	return strings.Replace(conf, "[upstream.mqtt]\n", "[upstream.mqtt]\nbalance = \"ip_hash\"\n", 1)
}
