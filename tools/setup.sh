#!/usr/bin/env bash
# Set up a fresh machine for wae-timm: the offline data packages, PyTorch
# (served from local disk here; do not ask for a newer one), then the package.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Fashion-MNIST (real 70k images) and Debian wallpapers (real photographs)
  $SUDO apt-get install -y -qq dataset-fashion-mnist mate-backgrounds >/dev/null
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
