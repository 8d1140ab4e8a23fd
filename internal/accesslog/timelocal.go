package accesslog

import (
	"time"

	"github.com/vipgate/vipgate/internal/clockfmt"
)

// timeLocal is nginx's $time_local, formatted once per second.
var timeLocal = clockfmt.New("02/Jan/2006:15:04:05 -0700")

// AppendTimeLocal appends t as nginx's $time_local, in t's zone (the
// local one for time.Now()).
func AppendTimeLocal(b []byte, t time.Time) []byte { return timeLocal.Append(b, t) }
