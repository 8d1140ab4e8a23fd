package stream

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/vipgate/vipgate/internal/accesslog"
)

// appendAccessLine appends one access log line in nginx's stream style,
//
//	$remote_addr [$time_local] TCP $status $bytes_sent $bytes_received $session_time "$upstream_addr" $end
//
// where bytes_sent went to the client, bytes_received came from it,
// upstream_addr lists every server tried ("a, b" as nginx, "-" for none)
// and end says how the stream ended (an endReason).
func appendAccessLine(b []byte, now time.Time, client netip.AddrPort, status int, sent, received int64,
	d time.Duration, tried []string, why endReason) []byte {
	if client.IsValid() {
		b = client.Addr().Unmap().AppendTo(b)
	} else {
		b = append(b, '-')
	}
	b = append(b, " ["...)
	b = accesslog.AppendTimeLocal(b, now)
	b = append(b, "] TCP "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, received, 10)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, d.Seconds(), 'f', 3, 64)
	b = append(b, " \""...)
	if len(tried) == 0 {
		b = append(b, '-')
	}
	for i, a := range tried {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, a...)
	}
	b = append(b, "\" "...)
	b = append(b, why...)
	return append(b, '\n')
}
