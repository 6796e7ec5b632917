#!/usr/bin/env bash
# The translation pipeline in one command: build the embedded data if missing, train, evaluate, report.
#   scripts/translation.sh [key=value ...]     e.g. scripts/translation.sh model.arch=transformer
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"
if [ ! -f "$root/data/translation/train.tsv" ]; then
  "$python" "$root/scripts/build_translation_data.py"
fi
exec "$python" -m attnapps.run task=translation "$@"
