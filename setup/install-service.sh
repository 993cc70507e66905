#!/usr/bin/env bash
# Makes Billy start at boot under systemd (run it after setup/install.sh). Safe to run again:
# it rewrites the units and restarts both, which is also what to do after an update.
#
#   sudo bash setup/install-service.sh               install, enable and (re)start Billy and his page
#   sudo bash setup/install-service.sh --uninstall   stop, disable and remove them
#   bash setup/install-service.sh --render DIR       only write the filled-in files into DIR (no root)
#
# It installs services/systemd/billy.service (the voice, Type=notify with a watchdog) and
# billy-web.service (the page), a polkit rule that lets Billy's user start, stop and restart
# billy.service without a password (so the page can start Billy when he is down), and adds
# that user to the gpio and audio groups. Billy runs as the user who called sudo
# (BILLY_USER=name to choose another).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
units_src="$root/services/systemd"
user="${BILLY_USER:-${SUDO_USER:-$(id -un)}}"
units=(billy.service billy-web.service)
# Where things go; the tests point these at a scratch folder.
unit_dir="${BILLY_UNIT_DIR:-/etc/systemd/system}"
polkit_dir="${BILLY_POLKIT_DIR:-/etc/polkit-1/rules.d}"
systemd_run="${BILLY_SYSTEMD_RUN:-/run/systemd/system}"
rules_file="$polkit_dir/50-billy.rules"

say() { printf '\033[1m[billy service]\033[0m %s\n' "$*"; }
die() { echo "install-service.sh: $*" >&2; exit 1; }

mode=install
render_dir=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --render) [ "$#" -ge 2 ] || die "--render needs a folder"; mode=render; render_dir="$2"; shift ;;
    --uninstall) mode=uninstall ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (use --render DIR, --uninstall or nothing)" ;;
  esac
  shift
done

# Unit files split on spaces and treat % and \ specially: refuse a path that would need quoting.
case "$root" in
  *[[:space:]%\\\"\'\|\&]*) die "the checkout path '$root' has a space or one of % \\ \" ' | &; move it (e.g. to ~/billy) and run this again" ;;
esac
id "$user" >/dev/null 2>&1 || die "no user '$user' on this machine; set BILLY_USER to the user who should run Billy"

# render SRC DEST: the file with @ROOT@ and @USER@ filled in.
render() { sed -e "s|@ROOT@|$root|g" -e "s|@USER@|$user|g" "$1" > "$2"; }

render_all() {  # render_all DIR
  for unit in "${units[@]}"; do
    render "$units_src/$unit" "$1/$unit"
  done
  render "$units_src/billy.rules" "$1/50-billy.rules"
}

if [ "$mode" = render ]; then
  mkdir -p "$render_dir"
  render_all "$render_dir"
  say "rendered ${units[*]} and 50-billy.rules into $render_dir (root $root, user $user)"
  exit 0
fi

suffix=""
[ "$mode" = uninstall ] && suffix=" --uninstall"
[ "$(id -u)" -eq 0 ] || die "run it with sudo: sudo bash setup/install-service.sh$suffix"
if ! command -v systemctl >/dev/null || [ ! -d "$systemd_run" ]; then
  die "systemd is not running on this machine"
fi

if [ "$mode" = uninstall ]; then
  systemctl disable --now "${units[@]}" 2>/dev/null || true
  for unit in "${units[@]}"; do rm -f "$unit_dir/$unit"; done
  rm -f "$rules_file"
  systemctl daemon-reload
  say "Billy no longer starts at boot (his files and the user's groups are unchanged)"
  exit 0
fi

[ -x "$root/.venv/bin/python" ] || die "no .venv in $root: run 'bash setup/install.sh' first"
if [ "$user" = root ]; then
  say "warning: Billy will run as root; run this with sudo from your own account to run him as you"
fi

# Folders Billy writes, made as his user (ReadWritePaths needs them to exist).
install -d -o "$user" -g "$(id -gn "$user")" "$root/.cache" "$root/sim-out"

# gpio: /dev/gpiochip* on Raspberry Pi OS; audio: /dev/snd. The units run with the user's
# groups as they are at each start, so the service needs no new login; a shell does.
added=()
for group in gpio audio; do
  if getent group "$group" >/dev/null && ! id -nG "$user" | tr ' ' '\n' | grep -qx "$group"; then
    usermod -aG "$group" "$user"
    added+=("$group")
  fi
done

# polkit lets the page (running as $user) run `systemctl start|stop|restart billy.service`.
if [ ! -d "$polkit_dir" ] && command -v apt-get >/dev/null; then
  say "installing polkitd (it lets Billy's page start Billy without a password)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends polkitd >/dev/null \
    || say "warning: could not install polkitd: the page cannot start Billy when he is down"
fi
if [ -d "$polkit_dir" ]; then
  tmp="$(mktemp)"
  render "$units_src/billy.rules" "$tmp"
  install -m 0644 "$tmp" "$rules_file"
  rm -f "$tmp"
fi

for unit in "${units[@]}"; do
  tmp="$(mktemp)"
  render "$units_src/$unit" "$tmp"
  install -m 0644 "$tmp" "$unit_dir/$unit"
  rm -f "$tmp"
done
systemctl daemon-reload
systemctl enable "${units[@]}" >/dev/null 2>&1
# restart, not start: running it again after an update must run the new code.
systemctl restart "${units[@]}"

port=""
if [ -f "$root/.env" ]; then
  port="$(sed -n 's/^[[:space:]]*FLASK_PORT[[:space:]]*=[[:space:]]*\([0-9]\+\).*/\1/p' "$root/.env" | tail -1)"
fi
say "Billy and his page run as services now, as $user, and start at boot."
[ "${#added[@]}" -eq 0 ] || say "added $user to the group(s) ${added[*]}; log in again before running Billy by hand"
cat <<EOF
  his log:        journalctl -u billy -f          (the page's: journalctl -u billy-web -f)
  his state:      systemctl status billy          (Status: shows what he is doing)
  stop / start:   sudo systemctl stop billy  /  sudo systemctl start billy
  the page:       http://$(hostname).local:${port:-8080}/  (on 127.0.0.1 only until WEB_PASSWORD is set)
  health check:   sudo systemctl stop billy; .venv/bin/python main.py check; sudo systemctl start billy
EOF
