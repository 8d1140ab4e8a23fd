#!/usr/bin/env bash
# Deletes network namespaces left by an interrupted test or demo run. Only
# names made by vipgate's lab helpers are touched: "vg<pid>x<n>-..." labs
# whose test process (pid) is gone, and "vgdemo-*" when no demo runs.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^vg' || true); do
  case "$ns" in
    vgdemo-*)
      pgrep -f 'examples/lab/demo.sh' >/dev/null && continue ;;
    vg[0-9]*x*)
      owner=${ns#vg}; owner=${owner%%x*}
      kill -0 "$owner" 2>/dev/null && continue ;;
  esac
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns delete "$ns" 2>/dev/null && echo "cleanup-labs: deleted stale namespace $ns"
done
# The working directory of a demo killed with SIGKILL.
if ! pgrep -f 'examples/lab/demo.sh' >/dev/null; then
  for d in /tmp/vgdemo.*; do
    [ -d "$d" ] && rm -rf "$d" && echo "cleanup-labs: removed stale $d"
  done
fi
exit 0
