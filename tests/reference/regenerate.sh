#!/usr/bin/env bash
# usage: bash tests/reference/regenerate.sh [BUILD_DIR]   (default: build)
# Rebuilds the CD reference fixture: reference_dump writes the inputs (our RNG's
# uniforms), the numpy script computes the expected values. Needs python3-numpy and
# python3-h5py (Debian); the tests themselves need neither.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
cmake --build "$build" --target reference_dump
"$build/tests/reference_dump" "$here/cd_inputs.h5"
/usr/bin/python3 "$here/cd_reference.py" "$here/cd_inputs.h5" "$here/cd_reference.h5"
