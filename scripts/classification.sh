#!/usr/bin/env bash
# The classification pipeline in one command: build the embedded data if missing, train, evaluate, report.
#   scripts/classification.sh [key=value ...]     e.g. scripts/classification.sh model.arch=transformer
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"
if [ ! -f "$root/data/classification/train.tsv" ]; then
  "$python" "$root/scripts/build_classification_data.py"
fi
exec "$python" -m attnapps.run task=classification "$@"
