package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"time"
)

// runRespond answers every HTTP/1.1 request on -listen with a fixed small
// response, doing as little as a Go program on Go's net can: accept, read
// until the end of the head, one write, and close when the client sent
// "Connection: close". Measured against nginx's "return 200" it gives the
// floor of CPU per request and per new connection that Go's runtime and
// net package set for any Go proxy, vipgate's included. Like vipgate's
// listeners it turns TCP keep-alive probes off. It stops after -duration
// or at SIGTERM/SIGINT (the process exit closes what is still open).
func runRespond(args []string) error {
	fs := flag.NewFlagSet("respond", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:8183", "address to serve on")
	duration := fs.Duration("duration", 30*time.Minute, "stop after this long")
	fs.Parse(args)

	ctx, cancel := untilStopped(*duration)
	defer cancel()
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and friends
			continue
		}
		go respond(c)
	}
}

// The body and header set of the backend's /small as nginx returns it.
var (
	respondKeepAlive = []byte("HTTP/1.1 200 OK\r\nServer: benchtool\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nConnection: keep-alive\r\n\r\nhello from the backend\n")
	respondClose     = []byte("HTTP/1.1 200 OK\r\nServer: benchtool\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nConnection: close\r\n\r\nhello from the backend\n")
	headEnd          = []byte("\r\n\r\n")
	connectionClose  = []byte("\nConnection: close\r")
)

// respond answers the bodiless requests on c (wrk's GETs) until the client
// closes or asks to.
func respond(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	n := 0
	for {
		end := bytes.Index(buf[:n], headEnd)
		if end < 0 {
			if n == len(buf) {
				return // a head this size is not wrk's
			}
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			continue
		}
		end += len(headEnd)
		if bytes.Contains(buf[:end], connectionClose) {
			c.Write(respondClose)
			return
		}
		if _, err := c.Write(respondKeepAlive); err != nil {
			return
		}
		n = copy(buf, buf[end:n])
	}
}
