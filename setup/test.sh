#!/usr/bin/env bash
# Sets up everything the tests need (Debian packages, .venv, models) and runs the suite.
# Extra arguments go to pytest, e.g. `bash setup/test.sh -m "not slow"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash setup/install.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
