package httpproxy

import (
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// serveStatic serves root + uri as nginx's root directive does. uri is the
// normalised $uri: it has no ".." segment, so the path cannot leave root.
// A directory is served by its index.html; a directory asked for without
// its trailing slash gets a 301 to it.
func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request, v *vhost, root, uri string, rec *logRecord) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.errorResponse(w, v, http.StatusMethodNotAllowed)
		return
	}
	name := filepath.Join(root, filepath.FromSlash(path.Clean("/"+uri)))
	if strings.HasSuffix(uri, "/") {
		name = filepath.Join(name, "index.html")
	}
	// O_NONBLOCK, as nginx: opening a FIFO (one a local user made in an
	// upload directory) would otherwise wait for a writer for good,
	// holding the request and an OS thread.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		status := http.StatusNotFound
		if errors.Is(err, fs.ErrPermission) {
			status = http.StatusForbidden
		}
		s.errorResponse(w, v, status)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		s.errorResponse(w, v, http.StatusInternalServerError)
		return
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		// A FIFO, socket or device: not a file to serve (nginx: "is not
		// a regular file", 404).
		s.errorResponse(w, v, http.StatusNotFound)
		return
	}
	if st.IsDir() {
		if strings.HasSuffix(uri, "/") {
			s.errorResponse(w, v, http.StatusForbidden)
			return
		}
		target := escapeURI(uri) + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", target)
		s.errorResponse(w, v, http.StatusMovedPermanently)
		return
	}
	ctype := mime.TypeByExtension(filepath.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream" // nginx's default_type
	}
	w.Header().Set("Content-Type", ctype)
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// countingWriter records status and body bytes for the access log.
type countingWriter struct {
	http.ResponseWriter
	rec *logRecord
	// sendTimeout bounds each write of an HTTP/2 stream (HTTP/1 writes
	// are bounded by clientConn.Write). The deadline is left in place when
	// the handler returns: net/http flushes the stream's last bytes then.
	sendTimeout time.Duration
}

func (c *countingWriter) WriteHeader(code int) {
	c.rec.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.rec.status == 0 {
		c.rec.status = http.StatusOK
	}
	if c.sendTimeout > 0 {
		_ = http.NewResponseController(c.ResponseWriter).SetWriteDeadline(time.Now().Add(c.sendTimeout))
	}
	n, err := c.ResponseWriter.Write(b)
	c.rec.bytes += int64(n)
	return n, err
}
