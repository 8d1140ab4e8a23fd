package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/vipgate/vipgate/proxy"
)

// Server is the admin HTTP server.
type Server struct {
	log  *zap.Logger
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Start listens on addr and serves the admin API from src. A non-loopback
// address is allowed but logged as a warning: /status shows the topology.
func Start(addr string, src Source, log *zap.Logger) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("admin_listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Warn("admin API listens on a non-loopback address: anyone who reaches it sees the node's status", zap.String("admin_listen", addr))
	}
	ln, err := net.Listen(proxy.Network(addr), addr)
	if err != nil {
		return nil, fmt.Errorf("admin_listen %s: %w", addr, err)
	}
	s := &Server{log: log, ln: ln, done: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           Handler(src),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("admin")),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin API stopped", zap.Error(err))
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}

// Handler is the admin API's routes (GET only, bounded request bodies).
func Handler(src Source) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{src: src})
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(src.Status())
	})
	mux.Handle("/metrics", metrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		st := src.Status()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(st.Unhealthy) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %s\n", strings.Join(st.Unhealthy, "; "))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if rebound(r) {
			http.Error(w, "the admin API answers a host name from this host only as localhost: use http://127.0.0.1:PORT or http://localhost:PORT", http.StatusMisdirectedRequest)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1024)
		mux.ServeHTTP(w, r)
	})
}

// rebound tells a request from this host whose Host is a name other than
// localhost: what a web page the operator opens sends after DNS rebinding
// (its own name made to resolve to 127.0.0.1, so that its script reads
// /status as same-origin). Remote scrapers may use names; local tools use
// an address or localhost.
func rebound(r *http.Request) bool {
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !remote.Addr().Unmap().IsLoopback() {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if _, err := netip.ParseAddr(host); err == nil || host == "" {
		return false // an address, or none (admin_listen = ":9900")
	}
	return !strings.EqualFold(host, "localhost")
}
