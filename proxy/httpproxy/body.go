package httpproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// bodyMemLimit is how much of a request body is kept in memory; the rest
// goes to an unlinked temporary file. The whole body is kept so that a
// retried request sends the same bytes (nginx's proxy_request_buffering).
const bodyMemLimit = 64 << 10

// requestBody is a client's request body, read completely.
type requestBody struct {
	mem  []byte
	file *os.File
	size int64
}

var (
	errBodyTooLarge = errors.New("request body larger than client_max_body_size")
	errBodyTimeout  = errors.New("client_body_timeout")
)

// readRequestBody reads r's body, max bytes at most (0 = no limit), with
// timeout between two reads.
func readRequestBody(w http.ResponseWriter, r *http.Request, max int64, timeout time.Duration) (*requestBody, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return &requestBody{}, nil
	}
	if max > 0 && r.ContentLength > max {
		return nil, errBodyTooLarge
	}
	rc := http.NewResponseController(w)
	b := &requestBody{}
	var mem bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		_ = rc.SetReadDeadline(time.Now().Add(timeout))
		n, err := r.Body.Read(buf)
		if n > 0 {
			b.size += int64(n)
			if max > 0 && b.size > max {
				b.close()
				return nil, errBodyTooLarge
			}
			if b.file == nil && mem.Len()+n <= bodyMemLimit {
				mem.Write(buf[:n])
			} else {
				if b.file == nil {
					f, ferr := os.CreateTemp("", "vipgate-body-")
					if ferr != nil {
						return nil, fmt.Errorf("request body: %w", ferr)
					}
					_ = os.Remove(f.Name()) // unlinked: gone when closed
					b.file = f
					if _, ferr := f.Write(mem.Bytes()); ferr != nil {
						b.close()
						return nil, fmt.Errorf("request body: %w", ferr)
					}
				}
				if _, ferr := b.file.Write(buf[:n]); ferr != nil {
					b.close()
					return nil, fmt.Errorf("request body: %w", ferr)
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			b.close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, errBodyTimeout
			}
			return nil, fmt.Errorf("request body: %w", err)
		}
	}
	_ = rc.SetReadDeadline(time.Time{})
	if b.file == nil {
		b.mem = mem.Bytes()
	}
	return b, nil
}

// reader returns a fresh reader of the whole body (one per attempt).
func (b *requestBody) reader() io.ReadCloser {
	if b.size == 0 {
		return http.NoBody
	}
	if b.file != nil {
		return io.NopCloser(io.NewSectionReader(b.file, 0, b.size))
	}
	return io.NopCloser(bytes.NewReader(b.mem))
}

func (b *requestBody) close() {
	if b != nil && b.file != nil {
		_ = b.file.Close()
		b.file = nil
	}
}
