package admin

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names; spec/config.md documents them.
var (
	descGeneration    = prometheus.NewDesc("vipgate_config_generation", "Number of the configuration in force (1 = the first).", nil, nil)
	descReloads       = prometheus.NewDesc("vipgate_reloads_total", "SIGHUP reloads by result.", []string{"result"}, nil)
	descListener      = prometheus.NewDesc("vipgate_listener_serving", "1 when the listener's accept loop serves.", []string{"listen"}, nil)
	descAccepted      = prometheus.NewDesc("vipgate_listener_accepted_total", "Connections accepted.", []string{"listen"}, nil)
	descAcceptErrors  = prometheus.NewDesc("vipgate_listener_accept_errors_total", "Failed accepts (EMFILE, ...).", []string{"listen"}, nil)
	descHTTPRefused   = prometheus.NewDesc("vipgate_http_proxy_header_refused_total", "Connections to [[http]] listeners closed for their PROXY header, by reason.", []string{"listen", "reason"}, nil)
	descHTTP          = prometheus.NewDesc("vipgate_http_responses_total", "Responses sent to clients by status class.", []string{"code"}, nil)
	descStreams       = prometheus.NewDesc("vipgate_stream_active", "Open TCP stream sessions.", nil, nil)
	descVRRPState     = prometheus.NewDesc("vipgate_vrrp_state", "1 for the instance's current state.", []string{"instance", "state"}, nil)
	descVRRPPrio      = prometheus.NewDesc("vipgate_vrrp_priority", "Configured and effective priority.", []string{"instance", "kind"}, nil)
	descVRRPTrans     = prometheus.NewDesc("vipgate_vrrp_transitions_total", "State transitions.", []string{"instance"}, nil)
	descVRRPSent      = prometheus.NewDesc("vipgate_vrrp_adverts_sent_total", "Adverts sent.", []string{"instance"}, nil)
	descVRRPRecv      = prometheus.NewDesc("vipgate_vrrp_adverts_received_total", "Adverts received and accepted.", []string{"instance"}, nil)
	descVRRPDrops     = prometheus.NewDesc("vipgate_vrrp_adverts_dropped_total", "Adverts dropped, by reason.", []string{"instance", "reason"}, nil)
	descVRRPIfDrops   = prometheus.NewDesc("vipgate_vrrp_interface_adverts_dropped_total", "Adverts no local instance is for (wrong_vrid, truncated), per interface.", []string{"interface", "family", "reason"}, nil)
	descVRRPMismatch  = prometheus.NewDesc("vipgate_vrrp_peer_config_mismatches_total", "Adverts whose address list differs from ours.", []string{"instance"}, nil)
	descVRRPVIPs      = prometheus.NewDesc("vipgate_vrrp_vips_held", "VIPs on the interface now.", []string{"instance"}, nil)
	descServerUp      = prometheus.NewDesc("vipgate_upstream_server_up", "1 when the server can be picked.", []string{"upstream", "server"}, nil)
	descServerActive  = prometheus.NewDesc("vipgate_upstream_server_active", "Active connections or requests.", []string{"upstream", "server"}, nil)
	descServerReqs    = prometheus.NewDesc("vipgate_upstream_server_requests_total", "Requests or streams sent.", []string{"upstream", "server"}, nil)
	descServerFails   = prometheus.NewDesc("vipgate_upstream_server_failures_total", "Failed attempts.", []string{"upstream", "server"}, nil)
	descServerResp    = prometheus.NewDesc("vipgate_upstream_server_responses_total", "Upstream responses by status class.", []string{"upstream", "server", "code"}, nil)
	descServerTime    = prometheus.NewDesc("vipgate_upstream_response_seconds", "Time until the upstream server's response head arrived (nginx $upstream_header_time).", []string{"upstream", "server"}, nil)
	descStreamActive  = prometheus.NewDesc("vipgate_stream_upstream_active", "Open streams by upstream.", []string{"upstream"}, nil)
	descStreamTotal   = prometheus.NewDesc("vipgate_stream_total", "Connected streams.", []string{"upstream"}, nil)
	descStreamBytes   = prometheus.NewDesc("vipgate_stream_bytes_total", "Bytes forwarded, by direction (to_upstream, to_client).", []string{"upstream", "direction"}, nil)
	descStreamConnF   = prometheus.NewDesc("vipgate_stream_connect_failures_total", "Failed or timed-out connects to servers.", []string{"upstream"}, nil)
	descStreamNoSrv   = prometheus.NewDesc("vipgate_stream_no_server_total", "Clients closed because no server could be picked or reached.", []string{"upstream"}, nil)
	descStreamEnded   = prometheus.NewDesc("vipgate_stream_ended_badly_total", "Connected streams ended by an error or proxy_timeout, by how (upstream_error, client_error, timeout).", []string{"upstream", "how"}, nil)
	descStreamAcc     = prometheus.NewDesc("vipgate_stream_accepted_total", "Connections accepted by stream listeners.", []string{"listen"}, nil)
	descStreamRefused = prometheus.NewDesc("vipgate_stream_proxy_header_refused_total", "Inbound PROXY headers refused, by reason.", []string{"listen", "reason"}, nil)
	descUpstreamAvail = prometheus.NewDesc("vipgate_upstream_available", "1 when at least one server can be picked.", []string{"upstream"}, nil)
	descAccessLines   = prometheus.NewDesc("vipgate_access_log_lines_total", "Access log lines by result (written, lost: the write failed).", []string{"result"}, nil)
)

type collector struct{ src Source }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGeneration, descReloads, descListener, descAccepted, descAcceptErrors, descHTTPRefused, descHTTP, descStreams,
		descVRRPState, descVRRPPrio, descVRRPTrans, descVRRPSent, descVRRPRecv, descVRRPDrops, descVRRPIfDrops, descVRRPMismatch, descVRRPVIPs,
		descServerUp, descServerActive, descServerReqs, descServerFails, descServerResp, descServerTime, descUpstreamAvail,
		descStreamActive, descStreamTotal, descStreamBytes, descStreamConnF, descStreamNoSrv, descStreamEnded, descStreamAcc, descStreamRefused, descAccessLines} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedMap(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var vrrpStates = []string{"INIT", "BACKUP", "MASTER", "FAULT"}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descGeneration, float64(st.Generation))
	counter(descReloads, st.Reloads.OK, "ok")
	counter(descReloads, st.Reloads.Failed, "failed")
	for _, l := range st.Listeners {
		gauge(descListener, b2f(l.Serving), l.Address)
		counter(descAccepted, l.Accepted, l.Address)
		counter(descAcceptErrors, l.AcceptErrors, l.Address)
		for _, reason := range sortedMap(l.ProxyHeaderRefused) {
			counter(descHTTPRefused, l.ProxyHeaderRefused[reason], l.Address, reason)
		}
	}
	for _, code := range sortedMap(st.HTTPResponses) {
		counter(descHTTP, st.HTTPResponses[code], code)
	}
	gauge(descStreams, float64(st.ActiveStreams))
	counter(descAccessLines, st.AccessLog.LinesWritten, "written")
	counter(descAccessLines, st.AccessLog.LinesLost, "lost")
	for _, u := range st.Streams.Upstreams {
		gauge(descStreamActive, float64(u.ActiveStreams), u.Upstream)
		counter(descStreamTotal, u.Streams, u.Upstream)
		counter(descStreamBytes, u.BytesFromClient, u.Upstream, "to_upstream")
		counter(descStreamBytes, u.BytesToClient, u.Upstream, "to_client")
		counter(descStreamConnF, u.ConnectFailures, u.Upstream)
		counter(descStreamNoSrv, u.NoServer, u.Upstream)
		counter(descStreamEnded, u.UpstreamErrors, u.Upstream, "upstream_error")
		counter(descStreamEnded, u.ClientErrors, u.Upstream, "client_error")
		counter(descStreamEnded, u.Timeouts, u.Upstream, "timeout")
	}
	for _, l := range st.Streams.Listeners {
		counter(descStreamAcc, l.Accepted, l.Listen)
		for _, reason := range sortedMap(l.ProxyHeaderRefused) {
			counter(descStreamRefused, l.ProxyHeaderRefused[reason], l.Listen, reason)
		}
	}
	for _, v := range st.VRRP {
		for _, s := range vrrpStates {
			gauge(descVRRPState, b2f(v.State == s), v.Name, s)
		}
		gauge(descVRRPPrio, float64(v.Priority), v.Name, "configured")
		gauge(descVRRPPrio, float64(v.EffectivePriority), v.Name, "effective")
		counter(descVRRPTrans, v.Transitions, v.Name)
		counter(descVRRPSent, v.AdvertsSent, v.Name)
		counter(descVRRPRecv, v.AdvertsReceived, v.Name)
		for _, reason := range sortedMap(v.Drops) {
			counter(descVRRPDrops, v.Drops[reason], v.Name, reason)
		}
		counter(descVRRPMismatch, v.PeerMismatches, v.Name)
		gauge(descVRRPVIPs, float64(len(v.VIPsHeld)), v.Name)
	}
	for _, i := range st.VRRPInterfaces {
		for _, reason := range sortedMap(i.Drops) {
			counter(descVRRPIfDrops, i.Drops[reason], i.Interface, i.Family, reason)
		}
	}
	for _, u := range st.Upstreams {
		gauge(descUpstreamAvail, b2f(u.Available), u.Name)
		for _, s := range u.Servers {
			// As the balancer decides: a backup server can be picked (while
			// no primary can), a full one as soon as a connection ends, a
			// failed one once fail_timeout passed (the next request probes
			// it; it may get none for long on an idle node).
			gauge(descServerUp, b2f(s.Pickable), u.Name, s.Address)
			gauge(descServerActive, float64(s.Active), u.Name, s.Address)
			counter(descServerReqs, s.Requests, u.Name, s.Address)
			counter(descServerFails, s.Failures, u.Name, s.Address)
			for _, code := range sortedMap(s.Responses) {
				counter(descServerResp, s.Responses[code], u.Name, s.Address, code)
			}
			h := s.ResponseTime
			if len(h.Buckets) > 0 && len(h.Buckets) == len(h.Counts) {
				buckets := make(map[float64]uint64, len(h.Buckets))
				for i, b := range h.Buckets {
					buckets[b] = h.Counts[i]
				}
				ch <- prometheus.MustNewConstHistogram(descServerTime, h.Count, h.Sum, buckets, u.Name, s.Address)
			}
		}
	}
}
