#!/usr/bin/env bash
# tmux-drive.sh - run a terminal program in a detached tmux of a fixed size, type into it,
# and dump its screen to a file. Each NAME gets its own tmux server (private socket), so
# `stop` only ever kills what `start` started, and never touches the user's tmux.
#
# Subcommands:
#   start NAME [-x COLS] [-y ROWS] [-e VAR=VAL]... -- COMMAND [ARGS...]
#                       start COMMAND in a detached session (default 120x40); the pane stays
#                       after COMMAND exits (remain-on-exit) so its last screen can be dumped
#   keys  NAME KEY...   tmux send-keys: names like Enter Escape Tab Up C-c F1, or plain words
#   type  NAME TEXT     send TEXT literally (no key-name lookup)
#   wait  NAME REGEX [TIMEOUT_S=10]   poll the screen until `grep -E REGEX` matches
#   dump  NAME FILE [--ansi]          screen as text (with --ansi: colours as escape codes)
#   status NAME         prints "running", "exited <code>" or "killed <signal>"
#   stop  NAME          kill the session's tmux server (by PID) and remove its socket dir
#   run   [-x C] [-y R] [-o FILE] [-w REGEX] [-k "KEYS"]... -- COMMAND...
#                       one shot: start, wait for REGEX, send each -k (split on spaces,
#                       as send-keys args), wait 0.5 s, dump to FILE (default stdout), stop
# Env: TMUX_DRIVE_DIR (default /tmp/tmux-drive) holds one socket dir per NAME.
set -euo pipefail

BASE="${TMUX_DRIVE_DIR:-/tmp/voicetui-tmux}"
die() { echo "tmux-drive: ERROR: $*" >&2; exit 1; }
command -v tmux >/dev/null || die "tmux not installed (apt-get install tmux)"

sock() { echo "$BASE/$1/sock"; }
T() { local n="$1"; shift; tmux -S "$(sock "$n")" "$@"; }
exists() { [ -S "$(sock "$1")" ] && T "$1" has-session -t "$1" 2>/dev/null; }
need() { [ -n "${1:-}" ] || die "missing NAME"; exists "$1" || die "no session '$1' (start it first)"; }

cmd_start() {
  local name="${1:-}"; shift || true
  [ -n "$name" ] || die "usage: start NAME [-x COLS] [-y ROWS] [-e VAR=VAL]... -- COMMAND..."
  [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "NAME must match [A-Za-z0-9_.-]+"
  local cols=120 rows=40 envs=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -x) cols="$2"; shift 2 ;; -y) rows="$2"; shift 2 ;;
      -e) envs+=(-e "$2"); shift 2 ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  [ $# -gt 0 ] || die "no COMMAND given"
  exists "$name" && die "session '$name' already running (stop it first)"
  rm -rf "${BASE:?}/$name"; mkdir -p "$BASE/$name"; chmod 700 "$BASE/$name"
  # Own config (never ~/.tmux.conf), in force before the session exists: no status line (the
  # whole window is the program's screen), pane kept after the program exits, fixed size even
  # if someone attaches, TERM=tmux-256color inside (terminfo is in ncurses-base), no Esc delay.
  # (window-size manual is set after creation: in the config file it crashes tmux 3.3a.)
  printf '%s\n' 'set -g status off' 'set -g remain-on-exit on' \
    'set -g default-terminal tmux-256color' 'set -sg escape-time 0' >"$BASE/$name/tmux.conf"
  # several args after the options = argv, run without a shell; one arg = a shell command line
  T "$name" -f "$BASE/$name/tmux.conf" new-session -d -s "$name" -x "$cols" -y "$rows" \
    -e COLORTERM=truecolor ${envs[@]+"${envs[@]}"} "$@" || { rm -rf "${BASE:?}/$name"; die "tmux new-session failed"; }
  T "$name" display -p -t "$name" '#{pid}' >"$BASE/$name/server.pid"
  T "$name" set-option -g window-size manual >/dev/null 2>&1 || true
  echo "tmux-drive: started '$name' ${cols}x${rows} (server pid $(cat "$BASE/$name/server.pid"))" >&2
}

cmd_keys() { local n="${1:-}"; need "$n"; shift; T "$n" send-keys -t "$n" "$@"; }
cmd_type() { local n="${1:-}"; need "$n"; shift; T "$n" send-keys -t "$n" -l -- "$*"; }

screen() { T "$1" capture-pane -p -t "$1" "${@:2}"; }

cmd_wait() {
  local n="${1:-}" re="${2:-}" to="${3:-10}"; need "$n"
  [ -n "$re" ] || die "usage: wait NAME REGEX [TIMEOUT_S]"
  local end=$(( $(date +%s%N) + to * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$end" ]; do
    screen "$n" | grep -Eq -- "$re" && return 0
    sleep 0.1
  done
  echo "tmux-drive: timeout after ${to}s waiting for /$re/ in '$n'; screen was:" >&2
  screen "$n" >&2; cmd_status "$n" >&2 || true
  return 1
}

cmd_dump() {
  local n="${1:-}" f="${2:-}" ansi=(); need "$n"
  [ -n "$f" ] || die "usage: dump NAME FILE [--ansi]"
  [ "${3:-}" = --ansi ] && ansi=(-e)
  if [ "$f" = - ]; then screen "$n" "${ansi[@]}"; else screen "$n" "${ansi[@]}" >"$f"; fi
}

cmd_status() {
  local n="${1:-}"; need "$n"
  local info dead code sig
  for _ in $(seq 20); do
    info="$(T "$n" display -p -t "$n" '#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}')"
    IFS=: read -r dead code sig <<<"$info"
    # Dead (pty EOF) but no status: tmux has not reaped the child (seen here: a zombie, status
    # empty for >6 s). Debian's tmux links libutempter, which briefly installs its own SIGCHLD
    # handler and can swallow the child's SIGCHLD (tmux/tmux#311). Nudge our server to waitpid.
    [ "$dead" = 1 ] && [ -z "$code$sig" ] || break
    kill -CHLD "$(tr -dc 0-9 <"$BASE/$n/server.pid")" 2>/dev/null || true
    sleep 0.05
  done
  if [ "$dead" != 1 ]; then echo running
  elif [ -n "$sig" ]; then echo "killed $sig"
  else echo "exited ${code:-?}"; fi
}

alive() {  # PID exists and is not a zombie (state follows "(comm)", which may contain spaces)
  local st; st="$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

cmd_stop() {
  local n="${1:-}"; [ -n "$n" ] || die "usage: stop NAME"
  local d="$BASE/$n" pid=""
  [ -d "$d" ] || { echo "tmux-drive: '$n' not running" >&2; return 0; }
  [ -r "$d/server.pid" ] && pid="$(tr -dc 0-9 <"$d/server.pid")"
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q tmux; then
    kill "$pid" 2>/dev/null || true   # server exit hangs up the pane, which ends the command
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.05; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -rf "${BASE:?}/$n"
  rmdir "$BASE" 2>/dev/null || true
}

cmd_run() {
  local cols=120 rows=40 out=- re="" keys=()
  RUN_NAME="run$$"  # global: the EXIT trap runs after this function has returned
  while [ $# -gt 0 ]; do
    case "$1" in
      -x) cols="$2"; shift 2 ;; -y) rows="$2"; shift 2 ;;
      -o) out="$2"; shift 2 ;; -w) re="$2"; shift 2 ;; -k) keys+=("$2"); shift 2 ;;
      --) shift; break ;; *) break ;;
    esac
  done
  [ $# -gt 0 ] || die "usage: run [-x C] [-y R] [-o FILE] [-w REGEX] [-k KEYS]... -- COMMAND..."
  trap 'cmd_stop "$RUN_NAME"' EXIT
  cmd_start "$RUN_NAME" -x "$cols" -y "$rows" -- "$@"
  [ -z "$re" ] || cmd_wait "$RUN_NAME" "$re" 15
  local k
  for k in ${keys[@]+"${keys[@]}"}; do
    # shellcheck disable=SC2086
    cmd_keys "$RUN_NAME" $k; sleep 0.3
  done
  [ ${#keys[@]} -eq 0 ] || sleep 0.5
  cmd_dump "$RUN_NAME" "$out"
}

sub="${1:-}"; shift || true
case "$sub" in
  start) cmd_start "$@" ;; keys) cmd_keys "$@" ;; type) cmd_type "$@" ;;
  wait) cmd_wait "$@" ;; dump) cmd_dump "$@" ;; status) cmd_status "$@" ;;
  stop) cmd_stop "$@" ;; run) cmd_run "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
