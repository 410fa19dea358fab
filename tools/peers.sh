#!/usr/bin/env bash
# tools/peers.sh — the peer figures of the README's speed section and issue 11:
# scikit-learn's BernoulliRBM and the tutorial's PyTorch CD-1 loop, samples/s on one
# thread, Fashion-MNIST, shapes 784x500/B100 and 784x256/B64 (tools/peers.py).
#
#   tools/peers.sh [peers.py options, e.g. --repeat 5 --samples 60000]
#
# Needs Debian's python3-numpy, python3-sklearn, python3-torch for /usr/bin/python3 (checked, never
# installed or downloaded here: `apt-get install python3-sklearn python3-torch`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Debian's interpreter (the packages above live there), not a pyenv/venv python3
# that may come first in PATH; PYTHON=... overrides.
py="${PYTHON:-/usr/bin/python3}"
missing=()
for m in numpy sklearn torch; do
  "$py" -c "import $m" 2>/dev/null || missing+=("$m")
done
if ((${#missing[@]})); then
  echo "peers.sh: python3 modules missing: ${missing[*]} (apt-get install python3-numpy python3-sklearn python3-torch)" >&2
  exit 2
fi

# One thread for every runtime the peers may use; nothing may reach the network.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export HF_HUB_OFFLINE=1 TORCH_HOME="${TMPDIR:-/tmp}/peers-torch-home"
echo "# $(uptime)"
exec "$py" "$here/peers.py" "$@"
