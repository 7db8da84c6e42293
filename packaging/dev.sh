#!/usr/bin/env bash
# Set up patchlab (idempotently) and run it:
#   bash packaging/dev.sh app [patchlab args]   -> the desktop app
#   bash packaging/dev.sh test [pytest args]    -> the test suite
#   bash packaging/dev.sh system                -> only the system libraries the window needs
# Uses $VIRTUAL_ENV when one is active, else ./.venv. Installs torch==2.13.0 only when no torch
# is importable, so an existing (GPU) torch is never replaced.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-}"; shift || true
case "$MODE" in app|test|system) ;; *) echo "usage: bash packaging/dev.sh app|test|system [args]" >&2; exit 2 ;; esac

say() { printf '[patchlab setup] %s\n' "$*" >&2; }

# -- system packages (Debian/Ubuntu, as root): fonts and the libraries Qt loads ----------------
SUDO=""
apt_need() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ -z "$SUDO" ] && [ "$(id -u)" != 0 ]; then
      say "missing system packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
      return 0
    fi
    say "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
  # not root (app set-up): sudo when it works without a password or a terminal can ask for one
  if [ "$MODE" != test ] && [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
    SUDO="sudo"
  fi
  apt_need fonts-dejavu-core libegl1 libgl1 libopengl0 libxkbcommon0 libfontconfig1 libglib2.0-0 libdbus-1-3
  if [ "$MODE" != test ]; then
    # Qt's X11 plugin needs these on a real desktop too (Ubuntu ships without libxcb-cursor0)
    apt_need libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0 \
      libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-xkb1 libxkbcommon-x11-0 libx11-xcb1
    # the virtual X server only when there is no display to draw on
    [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || apt_need xvfb xauth
  fi
fi
[ "$MODE" = system ] && exit 0

# -- Python environment --------------------------------------------------------------------------
PY="${PYTHON:-python3}"
if [ -n "${VIRTUAL_ENV:-}" ]; then
  VENV="$VIRTUAL_ENV"
else
  VENV="$ROOT/.venv"
  if [ ! -x "$VENV/bin/python" ]; then
    if "$PY" -c "import torch" >/dev/null 2>&1; then
      say "creating $VENV (reusing the torch already installed for $PY)"
      "$PY" -m venv --system-site-packages "$VENV"
    else
      say "creating $VENV"
      "$PY" -m venv "$VENV"
    fi
  fi
fi
VPY="$VENV/bin/python"
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  say "installing torch==2.13.0"
  "$VPY" -m pip install -q torch==2.13.0
fi
STAMP="$VENV/.patchlab-installed"
HASH="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ] || ! "$VPY" -c "import patchlab, pytestqt" >/dev/null 2>&1; then
  say "installing patchlab and its dependencies"
  "$VPY" -m pip install -q -e "$ROOT[test]"
  echo "$HASH" > "$STAMP"
fi

# -- run -----------------------------------------------------------------------------------------
cd "$ROOT"
if [ "$MODE" = test ]; then
  export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}" HF_HUB_OFFLINE=1
  exec "$VPY" -m pytest "$@"
fi
if [ "$(uname)" = Linux ] && [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
  if command -v xvfb-run >/dev/null 2>&1; then
    say "no display found: starting the window on a virtual X server (xvfb-run)"
    exec xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/patchlab" "$@"
  fi
  say "no display found: set DISPLAY, or QT_QPA_PLATFORM=offscreen to run without a screen"
fi
exec "$VENV/bin/patchlab" "$@"
