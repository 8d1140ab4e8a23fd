#!/usr/bin/env bash
# make bench: vipgate side by side with nginx and haproxy (HTTP and TCP
# stream), and with keepalived for VRRP failover, all measured in this one
# run. Pinning: the proxy under test on CPU 0 (one worker, GOMAXPROCS=1),
# backends and load generators on CPU 1. Every load is bounded in time and
# goes to 127.0.0.1 only (the failover lab lives in its own namespaces).
#
#   QUICK=1 scripts/bench.sh      one repetition of 2 s (development)
#   BENCH_ONLY="http stream failover"   sections to run (default: all)
#   BENCH_DURATION=6              seconds per load run (default 6, QUICK 2)
#   BENCH_REPS=5                  rounds (default 5, QUICK 1); the proxies
#                                 take turns going first (HTTP: started
#                                 anew every round)
#
# Tables go to stdout and to bench-results/<time>/ (report.txt, raw
# records in results.tsv, logs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/bin/vipgate
export PATH=$PATH:/usr/local/go/bin GOTOOLCHAIN=local
[ "$(id -u)" = 0 ] || { echo "bench: run as root (taskset, prlimit, strace, network namespaces)"; exit 1; }
[ -x "$BIN" ] || { echo "bench: $BIN not built (make build)"; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench: needs 2 CPUs (proxy on CPU 0, load on CPU 1)"; exit 1; }

QUICK=${QUICK:-0}
# Five alternating rounds of 6 s rather than three of 10 s: on a VM two runs
# of the same binary differ by 12-25%, and a median of more, shorter rounds
# (each proxy first in turn) is steadier for the same time.
if [ "$QUICK" = 1 ]; then REPS=1; DUR=${BENCH_DURATION:-2}; else REPS=${BENCH_REPS:-5}; DUR=${BENCH_DURATION:-6}; fi
ONLY=${BENCH_ONLY:-http stream failover}
HTTP_IDLE_CONNS=10000
STREAM_IDLE_CONNS=5000
CLK_TCK=$(getconf CLK_TCK)

OUT=$ROOT/bench-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
: >"$RESULTS"
WORK=$(mktemp -d /tmp/vgbench.XXXXXX)
chmod 755 "$WORK" # nginx workers (nobody) read the backend's files from here
STARTED=()        # PIDs of every long-running process this script started

cleanup() {
  set +e
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  sleep 0.3
  for pid in "${STARTED[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  cp "$WORK"/*.log "$WORK"/*.err "$OUT"/ 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Both the holder of idle connections and the proxies get 20,000 descriptors.
ulimit -n 20000

exec > >(tee "$OUT/report.txt") 2>&1

log() { printf '== %s  %s\n' "$(date +%T)" "$*" >&2; }
rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; } # table row column value

echo "vipgate bench $(date -u '+%F %T UTC'): vipgate $(git describe --always --dirty 2>/dev/null), QUICK=$QUICK ($REPS x ${DUR}s)"
echo "  $(uname -sr), $(nproc) CPUs: $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
echo "  $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | awk '{print "haproxy", $3}'), $(keepalived --version 2>&1 | head -1 | awk '{print "keepalived", $2}'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk", $2}'), $(iperf3 -v | head -1 | awk '{print $1, $2}'), $(go version | awk '{print $3}')"
log "building benchtool"
go build -o "$WORK/benchtool" ./scripts/benchtool
BT=$WORK/benchtool

# start NAME CPU CMD...: runs CMD pinned to CPU in the background, logs to
# $WORK/NAME.log; the PID (taskset execs, so it is CMD's) lands in $PID.
start() {
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" </dev/null >>"$WORK/$name.log" 2>&1 &
  PID=$!
  STARTED+=("$PID")
}

# stop PID: TERM, then KILL after 3 s.
stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

wait_port() { # host:port
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on $1" >&2
  return 1
}

tree() { echo "$1" $(pgrep -P "$1" || true); } # a process and its children (nginx workers)

# nginx_main NAME: the main context every nginx here starts with: one
# worker in the foreground, pid and error log under $WORK/NAME, 20,000
# descriptors.
nginx_main() {
  printf '%s\n' "worker_processes 1; daemon off; pid $WORK/$1.pid; error_log $WORK/$1.err;" \
    "worker_rlimit_nofile 20000;" "events { worker_connections 20000; }"
}

cpu_ticks() { # PID: utime+stime of it and its children, in clock ticks
  local t=0 p v
  for p in $(tree "$1"); do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

cpu_busy() { # CPU: ticks that CPU spent busy so far (all but idle and iowait)
  awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

rss_kb() { # PID: VmRSS of it and its children
  local t=0 p v
  for p in $(tree "$1"); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null) || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

fd_count() { # PID [pattern]: open descriptors of it and its children (matching pattern)
  local t=0 p
  for p in $(tree "$1"); do
    t=$((t + $(find "/proc/$p/fd" -mindepth 1 -printf '%l\n' 2>/dev/null | grep -c "${2:-.}" || true)))
  done
  echo "$t"
}

# hold ADDR N MODE NAME: opens N idle connections with benchtool hold
# (CPU 1) and returns when they are all open; $HOLD_PID, $HOLD_OK set.
hold() {
  local i
  start "$4" 1 "$BT" hold -addr "$1" -n "$2" -mode "$3" -parallel 64 -duration 3m
  HOLD_PID=$PID
  for i in $(seq 900); do grep -q '^ready' "$WORK/$4.log" && break; sleep 0.1; done
  HOLD_OK=$(sed -n 's/^ready ok=\([0-9]*\).*/\1/p' "$WORK/$4.log")
  HOLD_OK=${HOLD_OK:-0}
  sleep 1 # let the proxy settle (lazy buffers, GC)
}

# rotated N ITEM...: the items, starting at the Nth (1-based, wrapping), so
# that no proxy always runs first or last in a round.
rotated() {
  local n=$1
  shift
  local -a items=("$@")
  local i k=${#items[@]}
  for ((i = 0; i < k; i++)); do echo "${items[$(((n - 1 + i) % k))]}"; done
}

ratio_note() { echo "  (each cell: median (min-max) of $REPS run(s) of ${DUR}s; 'x nginx' divides medians)"; }

# ---------------------------------------------------------------- HTTP
bench_http() {
  log "HTTP: backend nginx on CPU 1"
  mkdir -p "$WORK/www"
  head -c 65536 /dev/urandom >"$WORK/www/64k"
  chmod -R a+rX "$WORK/www"
  cat >"$WORK/backend.conf" <<EOF
$(nginx_main backend)
http {
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  server {
    listen 127.0.0.1:9000 backlog=4096; root $WORK/www;
    location = /small { default_type text/plain; return 200 "hello from the backend\n"; }
    location = /64k { }
  }
}
EOF
  start backend 1 nginx -c "$WORK/backend.conf" -p "$WORK"
  local backend=$PID
  wait_port 127.0.0.1:9000

  # The request head every proxy sends the backend is the same: the
  # client's Host, X-Real-IP, X-Forwarded-For and X-Forwarded-Proto, as the
  # seed tutorials' proxy_set_header lines ask of nginx and vipgate does by
  # default (without them nginx and haproxy skipped work vipgate did).
  local NGINX_FORWARD_HEADERS='proxy_set_header Host $http_host; proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme;'
  cat >"$WORK/nginx-http.conf" <<EOF
$(nginx_main nginx-http)
http {
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  upstream be { server 127.0.0.1:9000; keepalive 64; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:8081 backlog=4096;
    location / {
      proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffers 16 8k; # 64 KiB responses stay in memory, no temp file
      $NGINX_FORWARD_HEADERS
    }
  }
  server { # the same, with the access log on, buffered as vipgate's below
    listen 127.0.0.1:8091 backlog=4096;
    access_log $WORK/nginx-http.access combined buffer=64k flush=1s;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; $NGINX_FORWARD_HEADERS }
  }
}
EOF
  cat >"$WORK/haproxy-http.cfg" <<EOF
global
  nbthread 1
  maxconn 9900 # maxsock = 2 x maxconn + listeners must fit in 20,000 descriptors
  ulimit-n 20000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend fe
  bind 127.0.0.1:8082
  default_backend be
backend be
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto http
  server s1 127.0.0.1:9000
EOF
  cat >"$WORK/vipgate-http.toml" <<EOF
[global]
node_name = "bench"
pid_file = "$WORK/vipgate-http.pid"
admin_listen = ""
access_log = "off"

[upstream.be]
keepalive = 64
[[upstream.be.server]]
address = "127.0.0.1:9000"

[[http]]
listen = ["127.0.0.1:8083"]
keepalive_timeout = "300s"
[[http.location]]
path = "/"
proxy_pass = "http://be"
EOF
  # vipgate's access log is global: a second instance has it on.
  sed -e "s|^access_log = \"off\"|access_log = \"$WORK/vipgate-http.access\"\naccess_log_buffer = \"64k\"\naccess_log_flush = \"1s\"|" \
    -e "s|vipgate-http.pid|vipgate-http-log.pid|" -e "s|127.0.0.1:8083|127.0.0.1:8093|" \
    "$WORK/vipgate-http.toml" >"$WORK/vipgate-http-log.toml"
  declare -A PORT=([nginx]=8081 [haproxy]=8082 [vipgate]=8083) PROXY
  # The access-log scenario: nginx's second server, vipgate's second instance.
  declare -A LOG_PORT=([nginx]=8091 [vipgate]=8093) LOG_PROXY
  local p
  local -a LIVE=() # proxies that started: one that did not is reported and left out
  # Every round starts the proxies anew: one start of the same binary can
  # serve 5% more or less than the next on this VM (heap and page
  # placement), so a median over rounds is a median over starts too.
  http_proxies_up() {
    start nginx-http 0 nginx -c "$WORK/nginx-http.conf" -p "$WORK"; PROXY[nginx]=$PID
    start haproxy-http 0 haproxy -db -f "$WORK/haproxy-http.cfg"; PROXY[haproxy]=$PID
    start vipgate-http 0 env GOMAXPROCS=1 "$BIN" -c "$WORK/vipgate-http.toml"; PROXY[vipgate]=$PID
    start vipgate-http-log 0 env GOMAXPROCS=1 "$BIN" -c "$WORK/vipgate-http-log.toml"; LOG_PROXY[vipgate]=$PID
    LOG_PROXY[nginx]=${PROXY[nginx]}
    wait_port 127.0.0.1:8093 || log "vipgate with the access log did not start"
    LIVE=()
    for p in nginx haproxy vipgate; do
      if wait_port "127.0.0.1:${PORT[$p]}"; then LIVE+=("$p"); else log "$p did not start:"; tail -5 "$WORK/$p-http.log" >&2; fi
    done
    for p in "${LIVE[@]}"; do # warm-up: upstream pools, page cache
      taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:${PORT[$p]}/small" >/dev/null || true
    done
  }
  http_proxies_down() {
    for p in nginx haproxy vipgate; do stop "${PROXY[$p]}"; done
    stop "${LOG_PROXY[vipgate]}"
  }

  # http_load LABEL TABLE ROW PID URL [wrk args]: one wrk run on CPU 1
  # against URL, recorded under TABLE/ROW: req/s, latency, errors, the CPU
  # time of PID (and its children) per request and the load CPU's.
  http_load() {
    local label=$1 table=$2 row=$3 pid=$4 url=$5
    shift 5
    local c0 c1 l0 l1 w0 ns line rps p50 p99 n errs
    c0=$(cpu_ticks "$pid") l0=$(cpu_busy 1) w0=$(date +%s%N)
    taskset -c 1 wrk -t1 -c64 -d"${DUR}s" --latency "$@" "$url" >"$WORK/wrk.out" 2>&1 || true
    c1=$(cpu_ticks "$pid") l1=$(cpu_busy 1) ns=$(($(date +%s%N) - w0))
    cp "$WORK/wrk.out" "$WORK/wrk-${label// /-}.log"
    if ! line=$("$BT" wrk <"$WORK/wrk.out"); then
      log "wrk $label failed:"; cat "$WORK/wrk.out" >&2; return 0
    fi
    read -r rps p50 p99 n errs <<<"$line"
    log "rep $label: $rps req/s p50 ${p50}ms p99 ${p99}ms errors $errs"
    rec "$table" "$row" "req/s" "$rps"
    rec "$table" "$row" "p50 ms" "$p50"
    rec "$table" "$row" "p99 ms" "$p99"
    rec "$table" "$row" "CPU us/req" "$(awk -v a="$c0" -v b="$c1" -v n="$n" -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)*1e6/hz/n}')"
    rec "$table" "$row" "load CPU us/req" "$(awk -v a="$l0" -v b="$l1" -v n="$n" -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", (b-a)*1e6/hz/n}')"
    rec "$table" "$row" "load CPU busy %" "$(awk -v a="$l0" -v b="$l1" -v ns="$ns" -v hz="$CLK_TCK" 'BEGIN{printf "%.0f", (b-a)*100/hz/(ns/1e9)}')"
    rec "$table" "$row" "errors" "$errs"
  }

  # The floor: no proxying, a small response straight from the program on
  # CPU 0: nginx's "return 200" against benchtool respond, the least a Go
  # program on Go's net does per request (accept, read, write, close). What
  # Go's runtime and net cost beyond nginx's event loop there, every Go
  # proxy pays before it does any proxying.
  cat >"$WORK/nginx-floor.conf" <<EOF
$(nginx_main nginx-floor)
http {
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  server {
    listen 127.0.0.1:8181 backlog=4096;
    location = /small { default_type text/plain; return 200 "hello from the backend\n"; }
  }
}
EOF
  http_floor_round() {
    local rep=$1 p f
    local -A FPORT=([nginx]=8181 [go-net]=8183) FPID=()
    local -A FTITLE=(
      [ka]="HTTP floor, no proxying: small response, keep-alive, 64 connections"
      [close]="HTTP floor, no proxying: small response, new connection per request, 64 connections")
    start nginx-floor 0 nginx -c "$WORK/nginx-floor.conf" -p "$WORK"; FPID[nginx]=$PID
    start respond-floor 0 env GOMAXPROCS=1 "$BT" respond -listen 127.0.0.1:8183 -duration 10m; FPID[go-net]=$PID
    for p in nginx go-net; do
      wait_port "127.0.0.1:${FPORT[$p]}" && taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:${FPORT[$p]}/small" >/dev/null || true
    done
    for f in ka close; do
      for p in $(rotated "$rep" nginx go-net); do
        local -a extra=()
        [ "$f" = close ] && extra=(-H "Connection: close")
        http_load "$rep floor-$f $p" "${FTITLE[$f]}" "$p" "${FPID[$p]}" "http://127.0.0.1:${FPORT[$p]}/small" "${extra[@]}"
      done
    done
    for p in nginx go-net; do stop "${FPID[$p]}"; done
  }

  local -a SCEN=(ka close big log)
  declare -A TITLE=(
    [ka]="HTTP small GET, keep-alive, 64 connections"
    [close]="HTTP small GET, new connection per request (Connection: close), 64 connections"
    [big]="HTTP 64 KiB responses, keep-alive, 64 connections"
    [log]="HTTP with the access log to a file (64k buffer, 1 s flush): small GET, keep-alive, 64 connections")
  declare -A URL=([ka]=/small [close]=/small [big]=/64k [log]=/small)
  local rep s port pid
  for rep in $(seq "$REPS"); do
    log "HTTP round $rep: proxies started on CPU 0"
    http_proxies_up
    for s in "${SCEN[@]}"; do
      for p in $(rotated "$rep" "${LIVE[@]}"); do
        local -a extra=()
        [ "$s" = close ] && extra=(-H "Connection: close")
        port=${PORT[$p]} pid=${PROXY[$p]}
        if [ "$s" = log ]; then
          [ -n "${LOG_PORT[$p]:-}" ] || continue # haproxy logs through syslog only
          port=${LOG_PORT[$p]} pid=${LOG_PROXY[$p]}
        fi
        http_load "$rep $s $p" "${TITLE[$s]}" "$p" "$pid" "http://127.0.0.1:${port}${URL[$s]}" "${extra[@]}"
      done
    done
    http_proxies_down
    http_floor_round "$rep"
  done

  log "HTTP: $HTTP_IDLE_CONNS idle keep-alive client connections per proxy"
  http_proxies_up
  local t="HTTP idle keep-alive client connections ($HTTP_IDLE_CONNS, one GET each, then idle)"
  local r0 r1 f0 f1
  for p in "${LIVE[@]}"; do
    r0=$(rss_kb "${PROXY[$p]}"); f0=$(fd_count "${PROXY[$p]}")
    hold "127.0.0.1:${PORT[$p]}" "$HTTP_IDLE_CONNS" http "hold-http-$p"
    r1=$(rss_kb "${PROXY[$p]}"); f1=$(fd_count "${PROXY[$p]}")
    stop "$HOLD_PID"
    log "$p: $HOLD_OK connections held, RSS $r0 -> $r1 KiB, fds $f0 -> $f1"
    rec "$t" "$p" "connections held" "$HOLD_OK"
    rec "$t" "$p" "RSS before KiB" "$r0"
    rec "$t" "$p" "RSS held KiB" "$r1"
    if [ "$HOLD_OK" -gt 0 ]; then
      rec "$t" "$p" "KiB/conn" "$(awk -v a="$r0" -v b="$r1" -v n="$HOLD_OK" 'BEGIN{printf "%.2f", (b-a)/n}')"
      rec "$t" "$p" "fds/conn" "$(awk -v a="$f0" -v b="$f1" -v n="$HOLD_OK" 'BEGIN{printf "%.2f", (b-a)/n}')"
    fi
  done
  http_proxies_down
  local lines
  for p in nginx vipgate; do # the access log scenario really logged
    lines=$(wc -l <"$WORK/$p-http.access" 2>/dev/null || echo 0)
    log "$p access log: $lines lines"
    rec "HTTP access log lines written (all runs of the access log scenario)" "$p" "lines" "$lines"
  done
  rm -f "$WORK"/*.access
  stop "$backend"

  echo
  echo "################ HTTP (proxy on CPU 0, one worker; backend nginx + wrk -t1 on CPU 1)"
  ratio_note
  "$BT" report -in "$RESULTS" -table "HTTP" -noratio "load CPU busy %,errors,connections held,RSS before KiB,RSS held KiB"
  echo "  every proxy sends the backend the client's Host, X-Real-IP, X-Forwarded-For, X-Forwarded-Proto (vipgate's"
  echo "  defaults; nginx: proxy_set_header as in the seed tutorials; haproxy: option forwardfor + set-header);"
  echo "  nginx: upstream keepalive 64, proxy_http_version 1.1, Connection \"\", proxy_buffers 16 8k;"
  echo "  haproxy: nbthread 1, http-reuse always, maxconn 9900 (it reserves 2 descriptors per connection in"
  echo "  the 20,000 limit, so it holds 9,900 idle clients, not 10,000); vipgate: GOMAXPROCS=1, upstream keepalive 64."
  echo "  access log scenario: nginx 'access_log ... combined buffer=64k flush=1s' in a second server, vipgate"
  echo "  access_log_buffer = \"64k\", access_log_flush = \"1s\" in a second instance; haproxy logs through syslog: left out."
  echo "  errors: socket errors + non-2xx responses counted by wrk."
  echo "  CPU us/req: the proxy's utime+stime (/proc/PID/stat, master and workers) over the run / requests."
  echo "  load CPU us/req, busy %: CPU 1 (wrk and the backend) while the load ran, per request and in all; near"
  echo "  100% busy the load CPU, not the proxy, sets req/s, and the proxies differ only in the load work they cause."
  echo "  floor tables: no proxying; nginx 'return 200' against benchtool respond (GOMAXPROCS=1), a Go program that"
  echo "  only accepts, reads the head, writes a fixed response and closes on Go's net, as vipgate's listeners do."
  echo "  Its CPU us/req over nginx's is what Go's runtime and net cost before any proxying."
  echo "  Every round starts the proxies anew (and warms each up with 1 s of load): the rounds are as many starts."

  echo
  echo "Allocations per proxied request (go test -bench ./proxy/httpproxy/):"
  if grep -qs '^func Benchmark' proxy/httpproxy/*_test.go; then
    go test -run '^$' -bench . -benchmem -benchtime 1s -cpu 1 ./proxy/httpproxy/ 2>&1 | tee "$OUT/httpproxy-bench.txt" |
      awk '/^Benchmark/ {printf "  %-50s %s ns/op  %s B/op  %s allocs/op\n", $1, $3, $5, $7} /^(FAIL|ok|---)/'
  else
    echo "  (no Benchmark function in proxy/httpproxy yet: nothing to report)"
  fi
}

# ---------------------------------------------------------------- stream
bench_stream() {
  local mod
  mod=$(ls /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so 2>/dev/null | head -1)
  [ -n "$mod" ] || { echo "bench: ngx_stream_module.so not found (libnginx-mod-stream)"; return 1; }
  log "stream: iperf3 server, zero-copy sink and echo server on CPU 1"
  start iperf3-server 1 iperf3 -s -B 127.0.0.1 -p 5201
  local iperf=$PID
  start sink 1 "$BT" sink -listen 127.0.0.1:5301 -duration 1h
  local sink=$PID
  start echo 1 "$BT" echo -listen 127.0.0.1:9100 -duration 1h
  local echo_pid=$PID
  wait_port 127.0.0.1:5201
  wait_port 127.0.0.1:5301
  wait_port 127.0.0.1:9100

  # Per proxy four listeners: bulk (to iperf3), bulk from memory (to the
  # sink), short (to echo), idle (to echo, with a PROXY header: v2 where
  # the proxy can send it).
  cat >"$WORK/nginx-stream.conf" <<EOF
load_module $mod;
$(nginx_main nginx-stream)
stream {
  server { listen 127.0.0.1:7081; proxy_pass 127.0.0.1:5201; }
  server { listen 127.0.0.1:7121; proxy_pass 127.0.0.1:5301; }
  server { listen 127.0.0.1:7091 backlog=4096; proxy_pass 127.0.0.1:9100; }
  server { listen 127.0.0.1:7101 backlog=4096; proxy_pass 127.0.0.1:9100; proxy_protocol on; }
  server { listen 127.0.0.1:7111 backlog=4096; proxy_pass 127.0.0.1:9100; proxy_half_close on; }
}
EOF
  cat >"$WORK/haproxy-stream.cfg" <<EOF
global
  nbthread 1
  maxconn 7000 # 5,000 idle streams; maxsock (2.5 x maxconn with splice pipes) fits in 20,000
  ulimit-n 20000
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  option splice-request
  option splice-response
listen bulk
  bind 127.0.0.1:7082
  server s1 127.0.0.1:5201
listen bulkmem
  bind 127.0.0.1:7122
  server s1 127.0.0.1:5301
listen short
  bind 127.0.0.1:7092
  server s1 127.0.0.1:9100
listen idle
  bind 127.0.0.1:7102
  server s1 127.0.0.1:9100 send-proxy-v2
EOF
  cat >"$WORK/vipgate-stream.toml" <<EOF
[global]
node_name = "bench"
pid_file = "$WORK/vipgate-stream.pid"
admin_listen = ""
access_log = "off"

[[stream]]
listen = ["127.0.0.1:7083"]
proxy_pass = "127.0.0.1:5201"
[[stream]]
listen = ["127.0.0.1:7123"]
proxy_pass = "127.0.0.1:5301"
[[stream]]
listen = ["127.0.0.1:7093"]
proxy_pass = "127.0.0.1:9100"
[[stream]]
listen = ["127.0.0.1:7103"]
proxy_pass = "127.0.0.1:9100"
proxy_protocol = "v2"
EOF
  declare -A PROXY BULK=([nginx]=7081 [haproxy]=7082 [vipgate]=7083 [direct]=5201) \
    BULKMEM=([nginx]=7121 [haproxy]=7122 [vipgate]=7123 [direct]=5301) \
    SHORT=([nginx]=7091 [haproxy]=7092 [vipgate]=7093 [direct]=9100 [nginx-halfclose]=7111) IDLE=([nginx]=7101 [haproxy]=7102 [vipgate]=7103)
  log "stream: proxies on CPU 0"
  start nginx-stream 0 nginx -c "$WORK/nginx-stream.conf" -p "$WORK"; PROXY[nginx]=$PID
  start haproxy-stream 0 haproxy -db -f "$WORK/haproxy-stream.cfg"; PROXY[haproxy]=$PID
  start vipgate-stream 0 env GOMAXPROCS=1 "$BIN" -c "$WORK/vipgate-stream.toml"; PROXY[vipgate]=$PID
  local p
  local -a LIVE=() # proxies that started: one that did not is reported and left out
  for p in nginx haproxy vipgate; do
    if wait_port "127.0.0.1:${BULK[$p]}" && wait_port "127.0.0.1:${BULKMEM[$p]}" && wait_port "127.0.0.1:${SHORT[$p]}" && wait_port "127.0.0.1:${IDLE[$p]}"; then
      LIVE+=("$p")
    else
      log "$p did not start:"; tail -5 "$WORK/$p-stream.log" >&2
    fi
  done

  local tb="Stream bulk throughput (iperf3 -t $DUR through the proxy; direct = ceiling, no proxy)"
  local tm="Stream bulk from memory (sendfile source, splice-to-/dev/null sink: the load copies nothing; ${DUR}s)"
  local ts="Stream short connections (connect, 5 bytes echoed, close; 16 loops, ${DUR}s)"
  local rep c0 c1 l0 l1 w0 line gbps bytes
  # bulk_rec TABLE PROXY LINE: records "gbit_per_s bytes", the proxy's CPU
  # per GB and how busy the load CPU was (c0, l0, w0: the counts and the
  # time in ns before).
  bulk_rec() {
    read -r gbps bytes <<<"$3"
    l1=$(cpu_busy 1)
    rec "$1" "$2" "Gbit/s" "$gbps"
    rec "$1" "$2" "load CPU busy %" "$(awk -v a="$l0" -v b="$l1" -v hz="$CLK_TCK" -v ns="$(($(date +%s%N) - w0))" 'BEGIN{printf "%.0f", (b-a)*100/hz/(ns/1e9)}')"
    if [ "$2" != direct ]; then
      c1=$(cpu_ticks "${PROXY[$2]}")
      rec "$1" "$2" "proxy CPU-s/GB" "$(awk -v a="$c0" -v b="$c1" -v n="$bytes" -v hz="$CLK_TCK" 'BEGIN{printf "%.3f", (b-a)/hz/(n/1e9)}')"
    fi
  }
  for rep in $(seq "$REPS"); do
    for p in $(rotated "$rep" direct "${LIVE[@]}"); do
      [ "$p" = direct ] || c0=$(cpu_ticks "${PROXY[$p]}")
      l0=$(cpu_busy 1) w0=$(date +%s%N)
      if ! taskset -c 1 iperf3 -c 127.0.0.1 -p "${BULK[$p]}" -t "$DUR" -J >"$WORK/iperf.json" 2>&1 ||
        ! line=$("$BT" iperf <"$WORK/iperf.json"); then
        log "iperf3 through $p failed"; head -c 2000 "$WORK/iperf.json" >&2; continue
      fi
      bulk_rec "$tb" "$p" "$line"
      log "rep $rep bulk $p: $gbps Gbit/s"
    done
    for p in $(rotated "$rep" direct "${LIVE[@]}"); do
      [ "$p" = direct ] || c0=$(cpu_ticks "${PROXY[$p]}")
      l0=$(cpu_busy 1) w0=$(date +%s%N)
      if ! line=$(taskset -c 1 "$BT" source -addr "127.0.0.1:${BULKMEM[$p]}" -duration "${DUR}s"); then
        log "zero-copy source through $p failed"; continue
      fi
      bulk_rec "$tm" "$p" "$line"
      log "rep $rep bulk from memory $p: $gbps Gbit/s"
    done
  done

  # Splice: count splice(2) calls with strace and pipe descriptors while
  # a 3 s iperf3 flows (a separate run: strace slows the proxy down).
  log "stream: splice evidence (strace -c -e trace=splice during a 3 s iperf3)"
  local tsp="Stream splice evidence (during a separate 3 s iperf3 through the proxy)"
  local straced
  for p in "${LIVE[@]}"; do
    local rest pipes
    rest=$(fd_count "${PROXY[$p]}" pipe:)
    taskset -c 1 iperf3 -c 127.0.0.1 -p "${BULK[$p]}" -t 3 >/dev/null 2>&1 &
    local ip=$!
    sleep 0.5
    pipes=$(fd_count "${PROXY[$p]}" pipe:)
    straced=$(tree "${PROXY[$p]}" | tr ' ' '\n' | tail -1) # nginx: the worker
    timeout -s INT 2 strace -f -c -e trace=splice -p "$straced" 2>"$WORK/strace-$p.log" >/dev/null || true
    wait "$ip" || true
    local calls
    calls=$(awk '$NF == "splice" {print $4}' "$WORK/strace-$p.log" | head -1) # % time, seconds, usecs/call, calls
    rec "$tsp" "$p" "splice calls in 2 s" "${calls:-0}"
    rec "$tsp" "$p" "pipe fds before" "$rest"
    rec "$tsp" "$p" "pipe fds while flowing" "$pipes"
  done

  log "stream: $STREAM_IDLE_CONNS idle streams per proxy"
  local ti="Stream idle streams ($STREAM_IDLE_CONNS, PROXY header to the server: v2; nginx can only send v1)"
  local r0 r1 f0 f1 pp
  for p in "${LIVE[@]}"; do
    r0=$(rss_kb "${PROXY[$p]}"); f0=$(fd_count "${PROXY[$p]}"); pp=$(fd_count "${PROXY[$p]}" pipe:)
    hold "127.0.0.1:${IDLE[$p]}" "$STREAM_IDLE_CONNS" stream "hold-stream-$p"
    r1=$(rss_kb "${PROXY[$p]}"); f1=$(fd_count "${PROXY[$p]}"); pp=$(fd_count "${PROXY[$p]}" pipe:)
    stop "$HOLD_PID"
    log "$p: $HOLD_OK streams held, RSS $r0 -> $r1 KiB, fds $f0 -> $f1 ($pp pipes)"
    rec "$ti" "$p" "streams held" "$HOLD_OK"
    if [ "$HOLD_OK" -gt 0 ]; then
      rec "$ti" "$p" "KiB/stream" "$(awk -v a="$r0" -v b="$r1" -v n="$HOLD_OK" 'BEGIN{printf "%.2f", (b-a)/n}')"
      rec "$ti" "$p" "fds/stream" "$(awk -v a="$f0" -v b="$f1" -v n="$HOLD_OK" 'BEGIN{printf "%.2f", (b-a)/n}')"
    fi
    rec "$ti" "$p" "pipe fds while held" "$pp"
  done

  # Short connections last: they leave tens of thousands of TIME_WAIT
  # sockets for a minute, which must not disturb the tests above (connect()
  # reuses such ports on loopback: net.ipv4.tcp_tw_reuse).
  # nginx closes both sides at the first EOF unless proxy_half_close is on;
  # vipgate and haproxy always pass a half-close on, which costs a shutdown
  # and one more read per connection: the same nginx with it on is the
  # like-for-like row.
  local -a SHORTS=("${LIVE[@]}" direct)
  if [[ " ${LIVE[*]} " == *" nginx "* ]]; then
    SHORTS+=(nginx-halfclose)
    PROXY[nginx-halfclose]=${PROXY[nginx]}
  fi
  for rep in $(seq "$REPS"); do
    for p in $(rotated "$rep" "${SHORTS[@]}"); do
      [ "$p" = direct ] || c0=$(cpu_ticks "${PROXY[$p]}")
      line=$(taskset -c 1 "$BT" short -addr "127.0.0.1:${SHORT[$p]}" -workers 16 -duration "${DUR}s" | head -1)
      local conns errs rate
      conns=$(sed -n 's/.*conns=\([0-9]*\).*/\1/p' <<<"$line")
      errs=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$line")
      rate=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' <<<"$line")
      log "rep $rep short $p: $line"
      rec "$ts" "$p" "conns/s" "$rate"
      rec "$ts" "$p" "errors" "$errs"
      if [ "$p" != direct ] && [ "${conns:-0}" -gt 0 ]; then
        c1=$(cpu_ticks "${PROXY[$p]}")
        rec "$ts" "$p" "proxy CPU us/conn" "$(awk -v a="$c0" -v b="$c1" -v n="$conns" -v hz="$CLK_TCK" 'BEGIN{printf "%.1f", (b-a)*1e6/hz/n}')"
      fi
    done
  done
  for p in nginx haproxy vipgate; do stop "${PROXY[$p]}"; done
  stop "$iperf"
  stop "$sink"
  stop "$echo_pid"

  echo
  echo "################ TCP stream (proxy on CPU 0, one worker; iperf3 / echo server and clients on CPU 1)"
  ratio_note
  "$BT" report -in "$RESULTS" -table "Stream" -noratio "load CPU busy %,errors,streams held,pipe fds while held,splice calls in 2 s,pipe fds before,pipe fds while flowing"
  echo "  haproxy: option splice-request + splice-response (splice-auto never spliced here). nginx stream has no"
  echo "  splice; it copies through its 16k buffer. errors: connections that failed (refused, reset, bad echo)."
  echo "  pipe fds: every pipe descriptor the proxy holds (/proc/PID/fd), whatever it uses them for."
  echo "  bulk from memory: benchtool source sendfile(2)s a 16 MiB memfd over and over and benchtool sink splices"
  echo "  into /dev/null, so the load CPU does TCP's work only and the proxy meets bytes no CPU just wrote (as"
  echo "  from a network card); iperf3 copies every byte in and out on the load CPU. load CPU busy %: CPU 1 while"
  echo "  the load ran (near 100: the load, not the proxy, was the limit)."
  echo "  nginx-halfclose: the same nginx with proxy_half_close on, which passes a client's half-close on to the"
  echo "  server as vipgate and haproxy always do (nginx's default closes both sides at the first EOF)."
}

# ---------------------------------------------------------------- failover
bench_failover() {
  log "failover: keepalived + nginx pair vs vipgate pair in network namespaces"
  echo
  echo "################ VRRP failover (namespace lab; client probes the VIP every 20 ms)"
  VIPGATE_BENCH_OUT=$OUT/failover.txt VIPGATE_BENCH_QUICK=$QUICK \
    go test -count=1 -run '^$' -bench Failover -benchtime 1x -timeout 15m ./internal/failoverbench/ 2>&1 |
    grep -v '^\(goos\|goarch\|pkg\|cpu\):' || echo "  failover benchmark failed (see above)"
}

# A section that fails is reported and the others still run (inside
# bench_*, a failing command then no longer stops the script: each checks
# what matters itself).
for section in $ONLY; do
  case $section in
  http | stream | failover) "bench_$section" || log "the $section section failed (see above)" ;;
  *) echo "bench: unknown section $section"; exit 2 ;;
  esac
done
if [ -s "$RESULTS" ]; then "$BT" goals -in "$RESULTS"; fi
[ -s "$OUT/failover.txt" ] && sed -n '/^Goals/,$p' "$OUT/failover.txt"
echo
echo "Results: $OUT (report.txt, results.tsv, logs)"
