#!/usr/bin/env bash
# model=timm and model=torchvision need a torchvision built for the installed torch. PyPI's
# torchvision does not import beside the CPU wheel of torch 2.13.0 (Quick start), so this builds
# a second environment with a matching pair and runs the zoo tests (timm, torchvision models, image
# augmentation through torchvision.transforms.v2) and README examples there.
#   bash scripts/check_zoo.sh [VENV]     (default: .venv-zoo; about 5.5 GB: a CUDA build of torch)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-zoo}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 -e ".[dev,timm]"
"$VENV/bin/python" -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__)"
"$VENV/bin/python" -m pytest -q -n 0 tests/test_zoo_models.py tests/test_augment_images.py
