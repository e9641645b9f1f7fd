#!/usr/bin/env bash
# Install everything (scripts/install.sh), check the code (ruff, mypy: configured in
# pyproject.toml) and run the whole test suite against the real PostgreSQL (embedded),
# the real Asterisk 22 (development PBX root) and SIPp. A lint or type error fails the
# run before any test starts.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k render`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
echo "==> ruff check"
.venv/bin/ruff check sipprov tests bench
echo "==> mypy"
.venv/bin/mypy
echo "==> running the test suite"
exec .venv/bin/python -m pytest -rs -p no:cacheprovider "$@"
