#!/usr/bin/env bash
# Set up .venv, start the project's Gemini emulator, and describe the bundled samples/ offline.
# Prints one JSON line per photo on stdout and the run summary on stderr.
# With a real key, the same command line runs against Google: see README ("Against Gemini").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/describe-images ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e '.[test]'
fi
url_file=$(mktemp)
.venv/bin/python -m describer.emulator --port 0 --latency 0.5-1.5 >"$url_file" 2>/dev/null &
emulator=$!
trap 'kill "$emulator" 2>/dev/null; rm -f "$url_file"' EXIT
for _ in $(seq 100); do [ -s "$url_file" ] && break; sleep 0.1; done
GOOGLE_GEMINI_BASE_URL=$(head -n 1 "$url_file") GEMINI_API_KEY=offline-demo \
  .venv/bin/describe-images samples/ --prompt "Describe this photo in one sentence." "$@"
