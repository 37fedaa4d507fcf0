#!/usr/bin/env bash
# Set up a fresh machine for wae-timm: the offline data packages, PyTorch
# (served from local disk here; do not ask for a newer one), then the package.
#   bash tools/setup.sh                 # what the demo and the tests need
#   bash tools/setup.sh --photographs   # also the wallpaper packages the shipped stage-1 WAE trains on
set -euo pipefail
PHOTOGRAPHS=0
for arg in "$@"; do
  case "$arg" in
    --photographs) PHOTOGRAPHS=1 ;;
    *) echo "tools/setup.sh: unknown argument $arg (expected: --photographs)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Fashion-MNIST (real 70k images) and Debian wallpapers (real photographs)
  $SUDO apt-get install -y -qq dataset-fashion-mnist mate-backgrounds >/dev/null
  if [ "$PHOTOGRAPHS" -eq 1 ]; then
    # the packages of wae_timm.data.photographs.PHOTOGRAPH_SOURCES, for tools/train_wae_photos.py only
    $SUDO apt-get install -y -qq plasma-workspace-wallpapers >/dev/null
  fi
fi
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e '.[test]'

# The weights shipped in the repository (hub/<model>.<tag>/, exactly the folders that go to the Hub)
# into the local Hugging Face cache, so `timm.create_model('wae_resnet18.fmnist', pretrained=True)`
# loads them offline. Validated first, only read; running setup again writes nothing.
shopt -s nullglob
shipped=(hub/*/)
if [ ${#shipped[@]} -gt 0 ]; then
  python -m wae_timm install-weights "${shipped[@]}"
else
  echo "setup: no shipped weights in hub/ (nothing to install into the HF cache)"
fi
