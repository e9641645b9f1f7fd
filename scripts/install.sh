#!/usr/bin/env bash
# Install everything sipprov needs on a fresh Debian 12 machine, as root:
# Debian packages (Python venv, debootstrap, SIPp), a virtualenv with sipprov and its
# extras (dev: the embedded PostgreSQL; test; bench; lint: ruff and mypy) at the versions
# pinned in requirements.lock, and the development PBX root (Asterisk 22, built once).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

want_debs=(debootstrap sip-tester ca-certificates chromium chromium-driver kamailio)
# Debian's python3 needs python3-venv for `python3 -m venv`.
case "$(command -v python3 || true)" in
    ""|/usr/bin/python3) want_debs+=(python3 python3-venv python3-pip) ;;
esac
missing=()
for pkg in "${want_debs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating virtualenv .venv"
    python3 -m venv .venv
fi
echo "==> installing sipprov and its dependencies into .venv"
.venv/bin/python -m pip install -q --upgrade pip
# -c: the exact versions of requirements.lock (scripts/lock.sh), not whatever is newest.
.venv/bin/python -m pip install -q -c requirements.lock -e '.[dev,test,bench,lint]'

echo "==> development PBX root (Asterisk 22; built once, then cached)"
.venv/bin/sipprov pbx build
