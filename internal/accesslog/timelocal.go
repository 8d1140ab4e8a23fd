package accesslog

import (
	"sync/atomic"
	"time"
)

// timeLocalLayout is nginx's $time_local.
const timeLocalLayout = "02/Jan/2006:15:04:05 -0700"

type timeLocal struct {
	sec  int64
	loc  *time.Location
	text []byte
}

// timeLocalCache is $time_local of the last second a line was written in:
// formatting it took about 2% of the CPU of a logged small request, and
// nginx too formats it once per second (ngx_cached_http_log_time).
var timeLocalCache atomic.Pointer[timeLocal]

// AppendTimeLocal appends t as nginx's $time_local, in t's zone (the
// local one for time.Now()).
func AppendTimeLocal(b []byte, t time.Time) []byte {
	sec, loc := t.Unix(), t.Location()
	if c := timeLocalCache.Load(); c != nil && c.sec == sec && c.loc == loc {
		return append(b, c.text...)
	}
	c := &timeLocal{sec: sec, loc: loc, text: t.AppendFormat(make([]byte, 0, len(timeLocalLayout)), timeLocalLayout)}
	timeLocalCache.Store(c)
	return append(b, c.text...)
}
