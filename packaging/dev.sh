#!/usr/bin/env bash
# Set up patchlab (idempotently) and run it:
#   bash packaging/dev.sh app [patchlab args]   -> the desktop app
#   bash packaging/dev.sh test [pytest args]    -> the test suite
# Uses $VIRTUAL_ENV when one is active, else ./.venv. Installs torch==2.13.0 only when no torch
# is importable, so an existing (GPU) torch is never replaced.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-}"; shift || true
case "$MODE" in app|test) ;; *) echo "usage: bash packaging/dev.sh app|test [args]" >&2; exit 2 ;; esac

say() { printf '[patchlab setup] %s\n' "$*" >&2; }

# -- system packages (Debian/Ubuntu, as root): fonts and the libraries Qt loads ----------------
apt_need() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing system packages: ${missing[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt_need fonts-dejavu-core libegl1 libgl1 libopengl0 libxkbcommon0 libfontconfig1 libglib2.0-0 libdbus-1-3
  if [ "$MODE" = app ] && [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    apt_need xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0 \
      libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxkbcommon-x11-0
  fi
fi

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
