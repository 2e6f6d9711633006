#!/usr/bin/env bash
# audio-sandbox.sh (voicetui) - headless virtual speaker + virtual microphone for PortAudio/sounddevice tests.
#
# A private PulseAudio daemon (user mode, works as root too) with:
#   vspeaker          null sink   = the app's speaker (default sink)
#   vspeaker.monitor  source      = what the app played; record it with parecord
#   vmic_feed         null sink   = tests paplay WAV files into it
#   vmic              remap source of vmic_feed.monitor = the app's microphone (default source)
# PortAudio reaches it through ALSA's `pulse` plugin (libasound2-plugins): sounddevice
# device 'pulse' or 'default' (only listed if the daemon runs when PortAudio initialises,
# i.e. when `import sounddevice` happens).
#
# Usage:
#   audio-sandbox.sh install          apt-get install what is missing (root), idempotent
#   audio-sandbox.sh venv [DIR]       python venv with sounddevice+numpy (default /tmp/audio-venv)
#   audio-sandbox.sh start            install if needed, start daemon (no-op if already running)
#   audio-sandbox.sh stop             kill the daemon we started (by PID), remove state dir
#   audio-sandbox.sh env              print `export` lines for a test process: eval "$(... env)"
#   audio-sandbox.sh status           exit 0 if running
#   audio-sandbox.sh play-mic FILE.wav          feed a WAV into the virtual mic (blocks until done)
#   audio-sandbox.sh record-speaker OUT.wav SEC [RATE]  record the virtual speaker for SEC seconds
#   audio-sandbox.sh speech "TEXT" OUT.wav [RATE]       espeak-ng + sox -> mono WAV (default 24000)
#   audio-sandbox.sh echo-on [DB] [MS]  a room: the speaker comes back into the mic, DB dB
#                                       quieter (default -12) and MS ms late (default 40),
#                                       mixed with whatever tests play into vmic_feed
#   audio-sandbox.sh echo-off           headphones again (no echo path)
#
# Env: AUDIO_SANDBOX_DIR (default /tmp/audio-sandbox), AUDIO_SANDBOX_NO_INSTALL=1 to never apt-get.
set -euo pipefail

DIR="${AUDIO_SANDBOX_DIR:-/tmp/voicetui-audio}"
SOCK="$DIR/native"
RT="$DIR/runtime"            # XDG_RUNTIME_DIR of the daemon; pid file at $RT/pulse/pid
PIDFILE="$RT/pulse/pid"
LOG="$DIR/pulseaudio.log"
case "$DIR" in /|/tmp|/root|/home|"${HOME:-/}"|"") echo "audio-sandbox: ERROR: refusing AUDIO_SANDBOX_DIR=$DIR" >&2; exit 1 ;; esac
APT_PKGS=(pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 espeak-ng sox)

die() { echo "audio-sandbox: ERROR: $*" >&2; exit 1; }
say() { echo "audio-sandbox: $*" >&2; }

pa_env() {  # environment for clients of our daemon
  export PULSE_SERVER="unix:$SOCK" PULSE_SINK=vspeaker PULSE_SOURCE=vmic \
         PULSE_CLIENTCONFIG="$DIR/client.conf" PULSE_COOKIE="$DIR/home/.config/pulse/cookie"
}

missing_pkgs() {
  local miss=()
  command -v pulseaudio >/dev/null || miss+=(pulseaudio)
  command -v pactl >/dev/null && command -v paplay >/dev/null && command -v parecord >/dev/null \
    || miss+=(pulseaudio-utils)
  compgen -G '/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so' >/dev/null || miss+=(libasound2-plugins)
  compgen -G '/usr/lib/*/libportaudio.so.2' >/dev/null || miss+=(libportaudio2)
  command -v espeak-ng >/dev/null || miss+=(espeak-ng)
  command -v sox >/dev/null || miss+=(sox)
  echo "${miss[@]:-}"
}

cmd_install() {
  local miss; miss="$(missing_pkgs)"
  [ -z "$miss" ] && { say "packages already installed"; return 0; }
  [ "${AUDIO_SANDBOX_NO_INSTALL:-0}" = 1 ] && die "missing packages: $miss (AUDIO_SANDBOX_NO_INSTALL=1)"
  [ "$(id -u)" = 0 ] || die "missing packages: $miss; run as root: apt-get install --no-install-recommends ${APT_PKGS[*]}"
  say "installing: ${APT_PKGS[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # update only if the package lists are missing or the install fails with stale lists
  if ! apt-get install -y -q --no-install-recommends "${APT_PKGS[@]}" >"/tmp/audio-sandbox-apt.log" 2>&1; then
    apt-get update -q >>"/tmp/audio-sandbox-apt.log" 2>&1 || true
    apt-get install -y -q --no-install-recommends "${APT_PKGS[@]}" >>"/tmp/audio-sandbox-apt.log" 2>&1 \
      || { tail -20 /tmp/audio-sandbox-apt.log >&2; die "apt-get install failed (log: /tmp/audio-sandbox-apt.log)"; }
  fi
  miss="$(missing_pkgs)"; [ -z "$miss" ] || die "still missing after install: $miss"
}

cmd_venv() {
  local v="${1:-/tmp/audio-venv}"
  [ -x "$v/bin/python" ] || python3 -m venv "$v" || die "python3 -m venv $v failed (apt-get install python3-venv?)"
  "$v/bin/python" -c 'import sounddevice, numpy' 2>/dev/null \
    || "$v/bin/pip" install -q sounddevice numpy || die "pip install sounddevice numpy failed"
  say "venv ready: $v"
}

pid_alive() {  # running and not a zombie
  local pid="$1" st
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  st="$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1  # state after "(comm)"
  [ "$st" != Z ]
}

our_pid() {  # prints the daemon PID if it is alive and really ours
  [ -r "$PIDFILE" ] || return 1
  local pid; pid="$(tr -dc 0-9 <"$PIDFILE")"
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$DIR/sandbox.pa" || return 1
  echo "$pid"
}

responsive() { ( pa_env; timeout 3 pactl info >/dev/null 2>&1 ); }

cmd_status() {
  local pid
  if pid="$(our_pid)" && responsive; then say "running (pid $pid, PULSE_SERVER=unix:$SOCK)"; return 0; fi
  say "not running"; return 1
}

cmd_start() {
  local pid
  if pid="$(our_pid)"; then
    if responsive; then say "already running (pid $pid)"; return 0; fi
    say "pid $pid exists but does not answer; restarting"; cmd_stop
  fi
  cmd_install
  clean_dir; mkdir -p "$DIR/home" "$RT"; chmod 700 "$RT"
  cat >"$DIR/sandbox.pa" <<EOF
load-module module-native-protocol-unix auth-anonymous=1 socket=$SOCK
load-module module-null-sink sink_name=vspeaker rate=48000 channels=2 sink_properties=device.description=VirtualSpeaker
load-module module-null-sink sink_name=vmic_feed rate=48000 channels=2 sink_properties=device.description=VirtualMicFeed
load-module module-remap-source source_name=vmic master=vmic_feed.monitor source_properties=device.description=VirtualMic
# keep-alive: a null sink sleeps up to 2 s between wake-ups while nothing asks for low latency,
# so every new stream would wait 0-2 s for its first data. A permanent 20 ms loopback from each
# source we use into a throw-away sink keeps both null sinks on a short timer (CPU ~0%).
load-module module-null-sink sink_name=vdiscard rate=48000 channels=2 sink_properties=device.description=KeepAliveDiscard
load-module module-loopback source=vspeaker.monitor sink=vdiscard latency_msec=20 source_dont_move=1 sink_dont_move=1
load-module module-loopback source=vmic sink=vdiscard latency_msec=20 source_dont_move=1 sink_dont_move=1
# a null sink created above already sleeps for its first 2 s block; a suspend/resume cycle
# restarts its clock with the short latency the loopbacks now ask for
suspend-sink vspeaker 1
suspend-sink vspeaker 0
suspend-sink vmic_feed 1
suspend-sink vmic_feed 0
suspend-sink vdiscard 1
suspend-sink vdiscard 0
set-default-sink vspeaker
set-default-source vmic
EOF
  printf 'autospawn = no\n' >"$DIR/client.conf"   # clients must never spawn a stray daemon
  # -n: skip default.pa (no udev/alsa/bluetooth probing); no idle exit; no realtime (needs rtkit/dbus)
  # no D-Bus: two private daemons on one session bus would fight over the name org.PulseAudio1
  if ! env -u PULSE_SERVER -u DBUS_SESSION_BUS_ADDRESS HOME="$DIR/home" XDG_RUNTIME_DIR="$RT" \
      pulseaudio --daemonize=yes -n -F "$DIR/sandbox.pa" --exit-idle-time=-1 \
      --use-pid-file=yes --realtime=no --high-priority=no --disable-shm=yes \
      --log-target="file:$LOG" </dev/null; then
    tail -20 "$LOG" >&2 2>/dev/null || true; die "pulseaudio failed to start (log: $LOG)"
  fi
  for _ in $(seq 50); do
    if responsive; then pid="$(our_pid)" || die "daemon answers but pid file $PIDFILE is wrong"
      say "started pulseaudio pid $pid; run: eval \"\$($0 env)\""; return 0; fi
    sleep 0.1
  done
  grep -E '^E:' "$LOG" >&2 || true; die "pulseaudio did not answer on $SOCK within 5 s (log: $LOG)"
}

cmd_stop() {
  local pid
  if pid="$(our_pid)"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do pid_alive "$pid" || break; sleep 0.1; done
    if pid_alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    say "stopped pulseaudio pid $pid"
  else
    say "not running"
  fi
  clean_dir
}

clean_dir() {  # remove only what start creates
  rm -rf "$RT" "$DIR/home" "$SOCK" "$DIR/sandbox.pa" "$DIR/client.conf" "$LOG" "$DIR/echo.module"
  rmdir "$DIR" 2>/dev/null || true
}

cmd_env() {
  cat <<EOF
export PULSE_SERVER=unix:$SOCK
export PULSE_SINK=vspeaker
export PULSE_SOURCE=vmic
export PULSE_CLIENTCONFIG=$DIR/client.conf
export PULSE_COOKIE=$DIR/home/.config/pulse/cookie
export AUDIO_SANDBOX_DIR=$DIR
export AUDIO_SANDBOX_SD_DEVICE=pulse
export AUDIO_SANDBOX_MIC_FEED_SINK=vmic_feed
export AUDIO_SANDBOX_SPEAKER_MONITOR=vspeaker.monitor
EOF
}

need_running() { our_pid >/dev/null && responsive || die "not running; call: $0 start"; }

cmd_play_mic() {
  [ -r "${1:-}" ] || die "usage: play-mic FILE.wav (file not readable: ${1:-})"
  need_running; pa_env; paplay --device=vmic_feed "$1" || die "paplay failed"
}

cmd_record_speaker() {
  local out="${1:-}" sec="${2:-}" rate="${3:-24000}"
  [ -n "$out" ] && [ -n "$sec" ] || die "usage: record-speaker OUT.wav SECONDS [RATE]"
  need_running; pa_env
  # SIGINT makes parecord finalise the WAV header; timeout exits 124 for that, which is success here.
  # --latency-msec: without it the server hands parecord ~2 s chunks and SIGINT loses the last one.
  timeout -s INT "$sec" parecord --latency-msec=50 --device=vspeaker.monitor --rate="$rate" --channels=1 \
    --format=s16le --file-format=wav "$out" || [ $? = 124 ] || die "parecord failed"
}

cmd_speech() {
  local text="${1:-}" out="${2:-}" rate="${3:-24000}"
  [ -n "$text" ] && [ -n "$out" ] || die "usage: speech \"TEXT\" OUT.wav [RATE]"
  command -v espeak-ng >/dev/null && command -v sox >/dev/null || die "need espeak-ng and sox: $0 install"
  local tmp; tmp="$(mktemp --suffix=.wav)"
  espeak-ng -w "$tmp" "$text" || { rm -f "$tmp"; die "espeak-ng failed"; }
  sox "$tmp" -r "$rate" -c 1 -b 16 "$out" || { rm -f "$tmp"; die "sox failed"; }
  rm -f "$tmp"
}

ECHO_MODULE="$DIR/echo.module"

cmd_echo_on() {
  local db="${1:--12}" ms="${2:-40}" module idx vol
  need_running; pa_env; cmd_echo_off 2>/dev/null || true
  # the loopback's latency_msec is its end-to-end delay (source buffer + sink buffer);
  # adjust_time=0: no rate adjustment that would make the delay wander during a test
  module="$(pactl load-module module-loopback source=vspeaker.monitor sink=vmic_feed \
    latency_msec="$ms" adjust_time=0 source_dont_move=1 sink_dont_move=1)" \
    || die "pactl load-module module-loopback failed"
  echo "$module" >"$ECHO_MODULE"
  idx="$(pactl list sink-inputs | awk -v m="$module" \
    '/^Sink Input #/ {sub("#", "", $3); i = $3} /Owner Module:/ && $3 == m {print i}')"
  [ -n "$idx" ] || die "the echo loopback (module $module) has no sink input"
  # PulseAudio volumes are cubic: amplitude = (vol / 65536)^3
  vol="$(awk -v db="$db" 'BEGIN { printf "%d", 65536 * 10 ^ (db / 60) }')"
  pactl set-sink-input-volume "$idx" "$vol" || die "pactl set-sink-input-volume failed"
  say "echo path on: ${db} dB, ${ms} ms (module $module)"
}

cmd_echo_off() {
  need_running; pa_env
  [ -r "$ECHO_MODULE" ] || { say "no echo path"; return 0; }
  pactl unload-module "$(tr -dc 0-9 <"$ECHO_MODULE")" 2>/dev/null || true
  rm -f "$ECHO_MODULE"; say "echo path off"
}

case "${1:-}" in
  install) cmd_install ;;
  venv) shift; cmd_venv "$@" ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  env) cmd_env ;;
  play-mic) shift; cmd_play_mic "$@" ;;
  record-speaker) shift; cmd_record_speaker "$@" ;;
  speech) shift; cmd_speech "$@" ;;
  echo-on) shift; cmd_echo_on "$@" ;;
  echo-off) cmd_echo_off ;;
  *) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
