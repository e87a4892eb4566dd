#!/usr/bin/env bash
# One GPU session of the benchmarks, in about 8 minutes of wall time, for a machine with no network:
#   bash benchmarks/gpu_session.sh            (on the GPU machine, from the repository root, .gpu/ carried)
#   DRY=1 OUT=/tmp/dry bash benchmarks/gpu_session.sh   (a CPU dry run of every part at toy sizes)
# Needs .gpu/ as benchmarks/gpu_pack.sh builds it. Installs its wheels into /tmp/site (PYTHONPATH),
# unpacks ComfyUI and AnimateDiff-Evolved into $EXT, then runs, most wanted first, each part with
# its own time limit (and never past the session's BUDGET seconds):
#   ade-bf16  ours vs AnimateDiff-Evolved in one ComfyUI process, full config, bf16 (bench_ade_inprocess.py)
#   train     a training step of the temporal layers, fp32 and bf16 (bench_train.py unet)
#   unet      the UNet step, bf16 and fp8 (bench_gpu.py)
#   cache     step caching's speed-up, bf16 (bench_cache.py)
#   ade-fp16  the ADE comparison in fp16
#   pipeline  text to video with offload none / model (bench_gpu.py)
# Each part's output goes to $OUT/<part>.log, everything also to $OUT/session.log.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:?set OUT to a folder for the logs}
mkdir -p "$OUT"
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
PACK=${PACK:-$REPO/.gpu}
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
EXT=${EXT:-/tmp/ext}
START=$SECONDS
exec > >(tee -a "$OUT/session.log") 2>&1

if [ -n "${DRY:-}" ]; then  # toy sizes on the CPU: proves imports and code paths, figures mean nothing
    DEV=cpu; CFG=mid; SIZE=32; TSIZE=32; ADE_STEPS=2; ROUNDS=1; CACHE_STEPS=3; UNET_DTYPES="bf16"
    SCALE=${SCALE:-6}; BUDGET=${BUDGET:-3600}
else
    DEV=cuda; CFG=full; SIZE=512; TSIZE=512; ADE_STEPS=6; ROUNDS=2; CACHE_STEPS=9; UNET_DTYPES="bf16 fp8"
fi
SCALE=${SCALE:-1}; BUDGET=${BUDGET:-470}

part() {  # part NAME SECONDS COMMAND...: run within min(SECONDS, what is left of BUDGET)
    local name=$1 limit=$(($2 * SCALE)); shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 30 ]; then echo "=== $name: skipped, ${left}s left of the session"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit}s, at $((SECONDS - START))s): $*"
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
    echo "=== $name: exit $? after $((SECONDS - t0))s"
}

echo "=== setup at $(date -u +%H:%M:%S)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$PACK"/whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
# benchmarks/gpu_stubs: a stand-in for PyAV, which ComfyUI imports in-process and no benchmark here uses
export PYTHONPATH=$SITE:$REPO/benchmarks/gpu_stubs${PYTHONPATH:+:$PYTHONPATH}
mkdir -p $EXT && tar -xJf "$PACK/ComfyUI.tar.xz" -C $EXT && tar -xJf "$PACK/ADE.tar.xz" -C $EXT \
    || { echo "unpacking ComfyUI/ADE failed"; exit 1; }
export COMFYUI_PATH=$EXT/ComfyUI HOTSHOT_XL_FIXTURES=$PACK/fixtures
"$PY" -c "import torch, diffusers, transformers, torchsde; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
echo "=== setup done in $((SECONDS - START))s"

B=benchmarks
part ade-bf16 170 "$PY" $B/bench_ade_inprocess.py --ade $EXT/ADE --config $CFG --dtype bf16 --device $DEV \
    --frames 8 --size $SIZE --steps $ADE_STEPS --rounds $ROUNDS --json "$OUT/ade-bf16.json"
part train 150 "$PY" $B/bench_train.py unet --config mid --frames 8 --size $TSIZE --device $DEV --dtypes fp32 bf16 --runs 2
part unet 100 "$PY" $B/bench_gpu.py --device $DEV --config $CFG --size $SIZE --dtypes $UNET_DTYPES --peak-tflops 990 --offload
part cache 90 "$PY" $B/bench_cache.py --config $CFG --dtype bf16 --device $DEV --frames 8 --size $SIZE \
    --steps $CACHE_STEPS --interval 3 --rounds 1
part ade-fp16 120 "$PY" $B/bench_ade_inprocess.py --ade $EXT/ADE --config $CFG --dtype fp16 --device $DEV \
    --frames 8 --size $SIZE --steps $ADE_STEPS --rounds $ROUNDS
part pipeline 120 "$PY" $B/bench_gpu.py --device $DEV --config $CFG --size $SIZE --dtypes bf16 --skip-unet \
    --offload none model --pipeline-steps 2
echo "=== session done in $((SECONDS - START))s at $(date -u +%H:%M:%S)"
