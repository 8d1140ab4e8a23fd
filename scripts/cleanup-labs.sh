#!/usr/bin/env bash
# Deletes network namespaces left by an interrupted test or demo run. Only
# names made by vipgate's lab helpers (prefix "vg") are touched.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^vg' || true); do
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns delete "$ns" 2>/dev/null && echo "cleanup-labs: deleted stale namespace $ns"
done
exit 0
