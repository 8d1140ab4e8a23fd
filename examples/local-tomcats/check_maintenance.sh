#!/bin/sh
# vrrp_script for vipgate: fails while /etc/vipgate/maintenance exists, so a
# node can be drained on purpose (touch the file; the VIP moves to the other
# node within a few seconds; remove it when done).
# Install: install -m 755 -o root -g root check_maintenance.sh /etc/vipgate/
test ! -e /etc/vipgate/maintenance
