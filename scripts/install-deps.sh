#!/usr/bin/env bash
# Installs the Debian packages given as arguments when any is missing.
# Services that Debian starts on installation (nginx on port 80, mosquitto
# on 1883, haproxy) are stopped and disabled again when this script is what
# installed them: the tests, the demo and the benchmarks start their own.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]} (a first run takes a few minutes)"
export DEBIAN_FRONTEND=noninteractive
# A fresh VM's unattended upgrades hold the dpkg lock for minutes: wait.
apt_opts=(-o DPkg::Lock::Timeout=600)
if ! apt-get "${apt_opts[@]}" update -qq || ! apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "install-deps: apt-get failed (offline, or another apt still running?); install them by hand:" >&2
  echo "  apt-get install ${missing[*]}" >&2
  exit 1
fi
for svc in nginx mosquitto haproxy keepalived; do
  case " ${missing[*]} " in
    *" $svc "* | *" $svc-light "*)
      systemctl disable --now "$svc" >/dev/null 2>&1 || true ;;
  esac
done
