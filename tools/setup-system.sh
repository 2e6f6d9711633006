#!/usr/bin/env bash
# setup-system.sh - install the system packages voicetui needs (Debian/Ubuntu, as root).
#   setup-system.sh run    PortAudio only: what the app needs to open sound devices
#   setup-system.sh test   + a private PulseAudio (virtual mic/speaker), espeak-ng/sox,
#                          gnome-keyring on a private D-Bus (real Secret Service), tmux
# Idempotent: installs only what is missing; `apt-get update` only if an install fails.
# Not root or no apt: prints the packages to install and exits 0 for `run` (the app says
# what is missing when it starts), 1 for `test`.
set -euo pipefail
RUN_PKGS=(libportaudio2)
TEST_PKGS=(libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins espeak-ng sox
           gnome-keyring dbus libsecret-tools tmux)
mode="${1:-run}"
case "$mode" in run) pkgs=("${RUN_PKGS[@]}") ;; test) pkgs=("${TEST_PKGS[@]}") ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;; esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "voicetui: missing system packages: ${missing[*]}" >&2
  echo "voicetui: install them with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  [ "$mode" = run ] && exit 0 || exit 1
fi
echo "voicetui: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=/tmp/voicetui-apt.log
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  apt-get update -q >>"$log" 2>&1 || true
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
    || { tail -20 "$log" >&2; echo "voicetui: apt-get install failed (log: $log)" >&2; exit 1; }
fi
