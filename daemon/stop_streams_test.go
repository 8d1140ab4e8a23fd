package daemon

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
)

// A node with no [[vrrp]] has no VIP to hand over: on a graceful stop its
// TCP streams should be let run up to shutdown_timeout, as nginx -s quit
// lets stream sessions finish (docs/config.md "Handover and stop" step 4),
// instead of being cut the moment the stop begins.
func TestStopWithoutVRRPLetsStreamsRunUntilShutdownTimeout(t *testing.T) {
	echoLn := echoListener(t)
	dir := t.TempDir()
	streamAddr := freeAddr(t)
	stream := fmt.Sprintf("[[stream]]\nlisten = [%q]\nproxy_pass = %q\n", streamAddr, echoLn.Addr().String())
	d, err := Start(loadCfg(t, dir, fmt.Sprintf(reviewCfg, dir, echoLn.Addr(), freeAddr(t), stream, "g1")), Options{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", streamAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(msg string) error {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		_, err := io.ReadFull(c, buf)
		return err
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- d.Stop(2 * time.Second) }() // reviewCfg's shutdown_timeout
	time.Sleep(300 * time.Millisecond)
	err = echo("during stop")
	<-stopped
	if err != nil {
		t.Fatalf("stream cut %v after the stop began, with shutdown_timeout 2s and no VRRP: %v", time.Since(start).Round(time.Millisecond), err)
	}
}
