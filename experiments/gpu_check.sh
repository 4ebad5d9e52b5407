#!/usr/bin/env bash
# The one prepared run for a GPU machine lent by the device tool (../shared/gpu/README.md is the recipe): install the
# carried wheels (carry: [".whl"], fetched by ../shared/gpu/fetch_wheels.sh), run the specifications that need CUDA,
# language-model studies on the GPU among them (bf16, two Ray trials sharing it), then the GPU benchmark; its JSON
# lands in $OUT.
#   CONFIG=digits.yaml TRIALS=16 ROWS=cpu:1,cuda:1,cuda:8 bash experiments/gpu_check.sh
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 SQUEEZER_PROGRESS=plain
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_devices.py tests/test_language_models.py 2>&1 | tail -5
python3 experiments/bench_gpu.py --config "${CONFIG:-digits.yaml}" --trials "${TRIALS:-16}" \
    --rows "${ROWS:-cpu:1,cuda:1,cuda:8}" --precision "${PRECISION:-bf16}" --out "${OUT:-.}/bench_gpu.json"
