#!/usr/bin/env bash
# make demo: two vipgate nodes in network namespaces share the VIP
# 192.0.2.50; a client asks the VIP every 100 ms and prints who answered;
# the master is killed (kill -9), comes back, and then hands over with a
# graceful stop. Everything lives in namespaces named vgdemo-*, removed at
# exit (even on Ctrl-C). Addresses are from 192.0.2.0/24 (documentation).
set -euo pipefail
BIN=$(realpath "${1:-bin/vipgate}")
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces)"; exit 1; }
[ -x "$BIN" ] || { echo "demo: $BIN not built (make build)"; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

P=vgdemo
SW=$P-switch
WORK=$(mktemp -d /tmp/vgdemo.XXXXXX)
chmod 755 "$WORK" # nginx workers (www-data) read the backends' pages from here
VIP=192.0.2.50
T0=$(date +%s%3N)

ts() { local ms=$(( $(date +%s%3N) - T0 )); printf '%3d.%02ds' $((ms / 1000)) $((ms % 1000 / 10)); }
# Bold on a terminal only (not in a log file or a pipe).
if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B='' N=''; fi
say() { printf '%s%s  %s%s\n' "$B" "$(ts)" "$*" "$N"; }

cleanup() {
  set +e
  [ -n "${CLIENT_PID:-}" ] && kill "$CLIENT_PID" 2>/dev/null
  for f in "$WORK"/*.run.pid "$WORK"/*-nginx.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  for ns in $SW $P-a $P-b $P-client; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns delete "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the lab: a bridge inside a namespace, three hosts plugged into it ---
ip netns add $SW
ip -n $SW link add br0 type bridge
ip -n $SW link set br0 up
ip -n $SW link set lo up
declare -A ADDR=([a]=192.0.2.11 [b]=192.0.2.12 [client]=192.0.2.100)
for h in a b client; do
  ip netns add $P-$h
  ip link add vg-$h netns $P-$h type veth peer name port-$h netns $SW
  ip -n $SW link set port-$h master br0 up
  ip -n $P-$h link set lo up
  ip -n $P-$h link set vg-$h name eth0
  ip -n $P-$h addr add "${ADDR[$h]}/24" dev eth0
  ip -n $P-$h link set eth0 up
done

# --- on each node: a backend ("Tomcat") and vipgate in front of it ---
start_node() { # name priority
  local n=$1
  ip netns exec $P-$n "$BIN" -c "$WORK/$n.toml" >>"$WORK/$n.log" 2>&1 &
  echo $! >"$WORK/$n.run.pid"
  disown # no "Killed" noise from the shell when the demo kills a node
}
for n in a b; do
  prio=$([ $n = a ] && echo 100 || echo 90)
  mkdir -p "$WORK/$n-www"
  echo "hello from the backend on node-$n" >"$WORK/$n-www/index.html"
  cat >"$WORK/$n-nginx.conf" <<NGX
worker_processes 1; pid $WORK/$n-nginx.pid; error_log $WORK/$n-nginx.err;
events { worker_connections 256; }
http { access_log off; server { listen 127.0.0.1:8080; root $WORK/$n-www; } }
NGX
  ip netns exec $P-$n "$NGINX" -c "$WORK/$n-nginx.conf" -p "$WORK"
  cat >"$WORK/$n.toml" <<TOML
[global]
node_name = "node-$n"
pid_file = "$WORK/$n.pid"
admin_listen = ""
access_log = "off"
shutdown_timeout = "5s"

[upstream.tomcat]
[[upstream.tomcat.server]]
address = "127.0.0.1:8080"

[[http]]
listen = ["$VIP:80"]          # a listener on the VIP works on the BACKUP too (IP_FREEBIND)
[[http.location]]
path = "/"
proxy_pass = "http://tomcat"

[[vrrp]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = $prio
version = 3
advert_int = "200ms"
virtual_ipaddress = ["$VIP/24"]
TOML
  start_node $n
done
say "node-a (priority 100) and node-b (priority 90) started; VIP $VIP"

who_has_vip() {
  local out=""
  for n in a b; do ip -n $P-$n -br addr show dev eth0 | grep -q "$VIP/" && out="$out node-$n"; done
  echo "${out:- nobody}"
}

# Both nodes must be running and one of them must hold the VIP; if not,
# show why before the working directory (and its logs) goes at exit.
for _ in $(seq 1 50); do [ "$(who_has_vip)" != " nobody" ] && break; sleep 0.1; done
for n in a b; do
  if ! kill -0 "$(cat "$WORK/$n.run.pid")" 2>/dev/null || [ "$(who_has_vip)" = " nobody" ]; then
    echo "demo: node-$n did not come up as it should; the nodes' logs:" >&2
    tail -n 20 "$WORK"/a.log "$WORK"/b.log "$WORK"/*-nginx.err >&2 2>/dev/null
    exit 1
  fi
done

# --- the client: one request every 100 ms, one line per change ---
(
  last=""
  for _ in $(seq 1 400); do
    # A patient client (2 s), as real ones are: during a graceful stop new
    # connections are held for a moment and answered by the new master.
    out=$(ip netns exec $P-client curl -s --max-time 2 -o "$WORK/answer" -w '%{http_code} %{time_total}' "http://$VIP/" 2>/dev/null || true)
    code=${out% *}; took=${out#* }
    if [ "$code" = 200 ]; then r=$(cat "$WORK/answer"); else r="NO ANSWER"; took=-; fi
    slow=$(awk -v t="$took" 'BEGIN { print (t != "-" && t > 0.2) ? 1 : 0 }')
    if [ "$r" != "$last" ] || [ "$slow" = 1 ]; then
      [ "$slow" = 1 ] && r2="$r (answered after ${took}s)" || r2=$r
      printf '%s  client: %s\n' "$(ts)" "$r2"; last=$r
    fi
    sleep 0.1
  done
) &
CLIENT_PID=$!

sleep 2
say "VIP is on:$(who_has_vip)"
say "kill -9 node-a (the master)"
kill -9 "$(cat "$WORK/a.run.pid")"
sleep 2
say "VIP is on:$(who_has_vip)"
say "restart node-a: with preempt it takes the VIP back"
start_node a
sleep 3
say "VIP is on:$(who_has_vip)"
say "graceful stop of node-a (vipgate -s stop): it hands over without a failed request"
"$BIN" -s stop -c "$WORK/a.toml" >/dev/null
sleep 2
say "VIP is on:$(who_has_vip)"
kill "$CLIENT_PID" 2>/dev/null || true
wait "$CLIENT_PID" 2>/dev/null || true
CLIENT_PID=
say "done; node logs were in $WORK (removed now). Namespaces are deleted on exit."
