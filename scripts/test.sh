#!/usr/bin/env bash
# Set up (once) and run the whole test suite, real-weight parity included.
#   bash scripts/test.sh [pytest args...]
# Creates .venv (torch 2.13.0 CPU wheel + the dev extra), fetches the real weights once into
# ${HARRIER_MODELS:-$HOME/.cache/harrier-models} with ../shared/models/fetch-*.sh, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check torch==2.13.0
python -m pip install -q --disable-pip-version-check -e ".[dev]"
export HARRIER_MODELS=${HARRIER_MODELS:-$HOME/.cache/harrier-models}
if [[ -d ../shared/models ]]; then
  bash ../shared/models/fetch-embeddinggemma-300m.sh "$HARRIER_MODELS" >/dev/null
  bash ../shared/models/fetch-gemma3-270m.sh "$HARRIER_MODELS" >/dev/null
  export HARRIER_REQUIRE_REAL=1   # real-weight tests fail instead of skipping when weights are missing
fi
python -m pytest -q -p no:cacheprovider "$@"
