#!/usr/bin/env bash
# Install everything (scripts/install.sh), start the development PBX and run the
# service on an embedded PostgreSQL. Stop with Ctrl-C; `sipprov pbx down` stops the PBX.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/sipprov pbx up
exec .venv/bin/sipprov serve "$@"
