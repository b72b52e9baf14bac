#!/usr/bin/env bash
# The GPU check, one device call: bench/gpu_check.py does the work (stages, timeouts, summary).
# Run from the repository root on the device, with .device/ carried (bench/device_prepare.py):
#
#   bash bench/gpu_check.sh            # results in $OUT (default ./gpu_check_out)
#
# The exact device invocation and what comes back: bench/RESULTS.md, "GPU check".
set -uo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/gpu_check.py "$@"
