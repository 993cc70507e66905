#!/usr/bin/env bash
# Installs and starts the systemd unit so Billy runs at boot (run after setup/install.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
user="${SUDO_USER:-$(id -un)}"
unit=/etc/systemd/system/billy.service
sed -e "s|@ROOT@|$root|g" -e "s|@USER@|$user|g" "$root/services/systemd/billy.service" > "$unit"
systemctl daemon-reload
systemctl enable --now billy.service
echo "Billy runs as a service now: 'journalctl -u billy -f' shows his log."
