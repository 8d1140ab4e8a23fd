package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// runEcho serves a TCP echo on -listen until -duration passes or it gets
// SIGTERM/SIGINT. A PROXY v1 or v2 header at the start of a connection is
// read and dropped, so the same server sits behind proxies with and
// without proxy_protocol.
func runEcho(args []string) error {
	fs := flag.NewFlagSet("echo", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9100", "address to serve on")
	duration := fs.Duration("duration", 30*time.Minute, "stop after this long")
	fs.Parse(args)

	return serveConns(*listen, *duration, echo)
}

// serveConns accepts connections on listen and runs handle on each in a
// goroutine of its own, until duration passes or SIGTERM/SIGINT comes;
// then it closes the listener and every open connection and returns once
// the handlers have. It prints "ready" when it listens.
func serveConns(listen string, duration time.Duration, handle func(net.Conn)) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ctx, cancel := untilStopped(duration)
	defer cancel()
	var open sync.Map // every live connection, closed when the server stops
	go func() {
		<-ctx.Done()
		ln.Close()
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	}()
	fmt.Println("ready")
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, syscall.EMFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		open.Store(c, nil)
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer open.Delete(c)
			defer c.Close()
			if ctx.Err() != nil {
				return
			}
			handle(c)
		}()
	}
}

var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// echo copies c back to itself after dropping a PROXY header.
func echo(c net.Conn) {
	br := bufio.NewReaderSize(c, 512)
	head, err := br.Peek(5)
	if err != nil {
		return
	}
	switch {
	case string(head) == "PROXY":
		if _, err := br.ReadSlice('\n'); err != nil {
			return
		}
	case head[0] == '\r':
		sig, err := br.Peek(16)
		if err != nil || !bytes.Equal(sig[:12], proxyV2Sig) {
			break
		}
		n := int(binary.BigEndian.Uint16(sig[14:16]))
		if _, err := br.Discard(16 + n); err != nil {
			return
		}
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := c.Write(b); err != nil {
			return
		}
	}
	io.Copy(c, c) // splice/loopback; the reader is now empty
}
