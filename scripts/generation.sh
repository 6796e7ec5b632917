#!/usr/bin/env bash
# The generation pipeline in one command: build the embedded data if missing, train, evaluate, sample, report.
#   scripts/generation.sh [key=value ...]     e.g. scripts/generation.sh model.arch=lstm_attention
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"
if [ ! -f "$root/data/generation/train.txt.gz" ]; then
  "$python" "$root/scripts/build_generation_data.py"
fi
exec "$python" -m attnapps.run task=generation "$@"
