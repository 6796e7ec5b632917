#!/usr/bin/env bash
# The captioning pipeline in one command: generate the synthetic scenes if missing (into the cache),
# cache the image features/pixels, train, evaluate, report.
#   scripts/captioning.sh [key=value ...]   e.g. scripts/captioning.sh data.path=/data/flickr8k data.image_dir=Flicker8k_Dataset
set -euo pipefail
python="${PYTHON:-python}"
exec "$python" -m attnapps.run task=captioning "$@"
