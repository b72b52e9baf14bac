#!/usr/bin/env bash
# GPU check of the CUDA backend — run from the repository root on a machine with an NVIDIA GPU.
#
#   bash bench/gpu_check.sh                 # results under $OUT (default: ./gpu_check_out)
#
# 1. installs carried wheels from .whl/ if present (e.g. nvidia-cudnn-frontend==1.32.0 built for
#    the box's Python; the GPU image lacks it) into /tmp/site,
# 2. runs tests/test_gpu.py (every kernel and layer check of the emulator tests, on CuPy; the
#    cuDNN Frontend convolutions against the reference when `cudnn` imports),
# 3. trains 200 steps with --backend cupy, once with --conv-impl kernels and once with cudnn, on
#    CelebA from $DATA (default ../shared/data/celeba, the shared data beside the checkout),
# 4. writes logs, metrics and a summary to $OUT.
# Every stage has its own timeout and a failure does not stop the later stages; the timeouts sum
# to under 9 minutes, so the script fits one 10-minute call on a lent GPU (tensorboardX is not on
# the GPU image: training runs with --no-tensorboard).
set -uo pipefail

OUT=${OUT:-$PWD/gpu_check_out}
DATA=${DATA:-../shared/data/celeba}
STEPS=${STEPS:-200}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export RAWGAN_CACHE=${RAWGAN_CACHE:-/tmp/rawgan_cache}
summary="$OUT/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }

# -- 1. environment ------------------------------------------------------------------------------
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} \
        || note "wheel install FAILED"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || note "nvidia-smi failed"
python3 - > "$OUT/env.txt" 2>&1 <<'PY'
import sys
print("python", sys.version)
try:
    import cupy
    print("cupy", cupy.__version__, "devices", cupy.cuda.runtime.getDeviceCount(),
          "runtime", cupy.cuda.runtime.runtimeGetVersion())
except Exception as e:
    print("cupy unavailable:", repr(e))
try:
    import cudnn
    print("cudnn frontend", getattr(cudnn, "__version__", "?"), "backend", cudnn.backend_version())
except Exception as e:
    print("cudnn unavailable:", repr(e))
PY
cat "$OUT/env.txt" >> "$summary"

# -- 2. tests ------------------------------------------------------------------------------------
timeout 240 python3 -m pytest -q -rs tests/test_gpu.py --junitxml="$OUT/test_gpu.xml" \
    > "$OUT/test_gpu.log" 2>&1
note "pytest tests/test_gpu.py: exit $? ($(tail -n 1 "$OUT/test_gpu.log"))"

# -- 3. training ---------------------------------------------------------------------------------
if [ ! -e "$DATA" ]; then
    note "no data at $DATA: training skipped"
else
    for impl in kernels cudnn; do
        start=$(date +%s)
        timeout 140 python3 -m rawgan.train --backend cupy --conv-impl "$impl" \
            --data celeba --data-dir "$DATA" --max-steps "$STEPS" --batch-size 64 --seed 0 \
            --log-every 20 --sample-every 100 --checkpoint-every 100 --no-tensorboard \
            --out "$OUT/train_$impl" > "$OUT/train_$impl.log" 2>&1
        rc=$?
        note "train --conv-impl $impl: exit $rc, $(( $(date +%s) - start )) s wall ($(grep -c . "$OUT/train_$impl.log") log lines)"
        grep -i -E "warn|step .*$STEPS|s/step|it/s" "$OUT/train_$impl.log" | tail -n 5 >> "$summary"
    done
fi
note "done: $OUT"
