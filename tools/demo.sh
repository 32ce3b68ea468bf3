#!/usr/bin/env bash
# Sets up cloudkernel (tools/setup.sh) and runs its demonstration.
# Usage: bash tools/demo.sh [demo options, see: cloudkernel demo --help]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
exec .venv/bin/cloudkernel demo "$@"
