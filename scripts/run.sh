#!/usr/bin/env bash
# Installs what is missing, then starts the app with the built-in model, offline.
# Arguments go to launch.py, e.g. `bash scripts/run.sh --port 8080`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh run
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec .venv/bin/python launch.py "$@"
