#!/usr/bin/env bash
# One command on a fresh AutoDL instance: the venv and every cache on the data disk, network_turbo on while it
# installs, the Jupyter kernel, and a check of the GPU, its driver and torch that ends with what to fix.
#
#   bash scripts/setup_autodl.sh                                   # root /root/autodl-tmp, venv <root>/venv
#   bash scripts/setup_autodl.sh --root /data --venv /data/venv     # another disk
#   bash scripts/setup_autodl.sh --venv .venv --no-install          # an existing venv: only caches, kernel, checks
#
# PYTHON picks the interpreter the venv is made from (default python3; the kit needs 3.10 to 3.13).
# Before installing, the NVIDIA driver is checked against torch's CUDA 13 build (driver >= 580); on an older host,
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 installs torch built for CUDA 12.6 first.
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
root=/root/autodl-tmp
venv=""
install=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --venv) venv=$2; shift 2 ;;
    --no-install) install=0; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option '$1' (use --root DIR, --venv DIR, --no-install)" >&2; exit 1 ;;
  esac
done
[ -d "$root" ] || { echo "error: $root does not exist; on AutoDL it is the data disk, elsewhere pass --root DIR" >&2; exit 1; }
root=$(cd "$root" && pwd)
venv=${venv:-$root/venv}
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' || {
  echo "error: $("$python" --version 2>&1) cannot run the kit (3.10 to 3.13): pick an AutoDL image with Python 3.10+," \
       "or \`conda create -y -p $root/py311 python=3.11\` and rerun with PYTHON=$root/py311/bin/python" >&2; exit 1; }

if [ -f /etc/network_turbo ]; then
  # shellcheck disable=SC1091
  . /etc/network_turbo >/dev/null && echo "network_turbo: on while this script runs"
fi
cd "$project"
eval "$(PYTHONPATH="$project" "$python" -m kit.cli setup --root "$root" --print-env)"  # pip's cache on the data disk
if [ "$install" = 1 ] && [ -z "${TORCH_INDEX_URL:-}" ]; then  # the driver, before 6.8 GB of torch and CUDA
  PYTHONPATH="$project" "$python" -m kit.cli setup --check-driver || exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "venv: creating $venv"
  "$python" -m venv "$venv"
fi
if [ "$install" = 1 ]; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$venv/bin/python" -m pip install "torch<2.15" --index-url "$TORCH_INDEX_URL"
  fi
  "$venv/bin/python" -m pip install -e "$project[dev]"
fi
"$venv/bin/python" -m kit.cli setup --root "$root"
echo "next: source $venv/bin/activate && source $root/qwen3-kit.env && python scripts/train.py --config configs/smoke.yaml"
