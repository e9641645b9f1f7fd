#!/usr/bin/env bash
# Install everything (scripts/install.sh) and run the whole test suite against the real
# PostgreSQL (embedded), the real Asterisk 22 (development PBX root) and SIPp.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k render`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
echo "==> running the test suite"
exec .venv/bin/python -m pytest -rs -p no:cacheprovider "$@"
