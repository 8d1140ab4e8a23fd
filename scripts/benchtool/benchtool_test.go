package main

import (
	"bytes"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDurationMS(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
	}{
		{"456.00us", 0.456},
		{"1.23ms", 1.23},
		{"1.02s", 1020},
		{"2.00m", 120000},
		{"fast", -1},
	} {
		if got := durationMS(tc.in); got != tc.want {
			t.Errorf("durationMS(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSummarizeMedianMinMax(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"3", "1", "2"}, "2 (1-3)"},
		{[]string{"5"}, "5"},
		{[]string{"1.5", "1.5"}, "1.50"},
		{[]string{"10", "20"}, "15 (10-20)"},
		{[]string{"yes", "3"}, "yes"},
		{nil, "-"},
	} {
		if got := summarize(tc.in).String(); got != tc.want {
			t.Errorf("summarize(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReportRatioToBaseAndAlignment(t *testing.T) {
	in := "T\tnginx\treq/s\t100\nT\tnginx\treq/s\t300\nT\tvipgate\treq/s\t50\nT\tvipgate\terrors\t2\nT\tnginx\terrors\t0\n"
	tables, err := readTables(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printTable(&out, tables[0], "nginx", map[string]bool{"errors": true})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 { // title, header, rule, two rows
		t.Fatalf("got %d lines:\n%s", len(lines), out.String())
	}
	if !strings.Contains(lines[4], "0.25x") { // 50 / median(100, 300)
		t.Errorf("vipgate row lacks its ratio 0.25x: %q", lines[4])
	}
	if strings.Count(lines[1], "x nginx") != 1 {
		t.Errorf("want one ratio column (errors has none): %q", lines[1])
	}
	if len(lines[3]) != len(lines[4]) {
		t.Errorf("rows not aligned:\n%s\n%s", lines[3], lines[4])
	}
}

func TestReadTablesRejectsShortLines(t *testing.T) {
	if _, err := readTables(strings.NewReader("T\tnginx\treq/s\n")); err == nil {
		t.Fatal("a line with 3 fields was accepted")
	}
}

func TestParseWrkCountsSocketErrorsAndNon2xx(t *testing.T) {
	out := `Running 2s test @ http://127.0.0.1:8083/small
  1 threads and 64 connections
  Latency Distribution
     50%    2.89ms
     75%    3.61ms
     90%    4.67ms
     99%    7.08ms
  39931 requests in 2.00s, 5.60MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 17
Requests/sec:  19955.04
Transfer/sec:      2.80MB
`
	r, err := parseWrk(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{rps: 19955.04, p50: 2.89, p99: 7.08, requests: 39931, errors: 23}
	if r != want {
		t.Errorf("parseWrk = %+v, want %+v", r, want)
	}
	if _, err := parseWrk(strings.NewReader("unable to connect to 127.0.0.1:8083 Connection refused\n")); err == nil {
		t.Error("output without results parsed without error")
	}
}

// The zero-copy bulk pair: every byte the source counts arrived at the
// sink, and the source's time includes the sink taking the last of them.
func TestSourceSendsWhatTheSinkTakes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	taken := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			taken <- -1
			return
		}
		defer c.Close()
		// Starts taking after the source's time is up: what is in
		// flight then must still count, and the time must cover it.
		time.Sleep(500 * time.Millisecond)
		n, _ := discard(null, c)
		taken <- n
	}()
	sent, secs, err := send(ln.Addr().String(), 300*time.Millisecond, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-taken; got != sent {
		t.Errorf("source counted %d bytes, the sink took %d", sent, got)
	}
	if secs < 0.5 {
		t.Errorf("%d bytes in %.3f s: the time must last until the sink took the last byte (after 0.5 s)", sent, secs)
	}
}

// The floor responder answers pipelined keep-alive requests on one
// connection, a request split across reads, and closes after a
// "Connection: close" one.
func TestRespondKeepsAliveAndClosesWhenAsked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			respond(c)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	get := "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, chunk := range []string{get + get + get[:10], get[10:], "GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"} {
		if _, err := c.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var all bytes.Buffer
	if _, err := all.ReadFrom(c); err != nil { // ends at the responder's close
		t.Fatalf("reading the responses: %v", err)
	}
	want := strings.Repeat(string(respondKeepAlive), 3) + string(respondClose)
	if all.String() != want {
		t.Errorf("got %q\nwant four responses, the last with Connection: close, then EOF", all.String())
	}
}
