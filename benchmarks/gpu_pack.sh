#!/usr/bin/env bash
# Build the folder that travels with a GPU run of benchmarks/gpu_session.sh (default: .gpu/ in the
# repository root, which .git/info/exclude must ignore): what the device image lacks, kept small.
#   whl/                  wheels for Python 3.12 manylinux: diffusers (+ importlib_metadata) for the
#                         pipeline and training benchmarks, torchsde (+ trampoline) for ComfyUI's samplers
#   ComfyUI.tar.xz        the ComfyUI checkout at $COMFYUI_SRC without its git history, tests, API nodes,
#                         front-end folders or tokenizer data (in-process loading and sampling need none)
#   ADE.tar.xz            the AnimateDiff-Evolved checkout at $ADE_SRC without its git history, docs, web
#   fixtures/             hotshot_xl_unet_keys.json (the full config) and an empty hotshot-xl-tiny/ (what
#                         benchmarks/_common.fixtures() looks for), so HOTSHOT_XL_FIXTURES can point here
#                         and tests/fixtures need not travel
# Usage: benchmarks/gpu_pack.sh [DEST]   (pip must reach a package index: `pip download`)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$REPO/.gpu}
COMFYUI_SRC=${COMFYUI_SRC:-/work/ext/ComfyUI}
ADE_SRC=${ADE_SRC:-/work/ext/ADE}
WHEELS="diffusers==0.42.1 importlib_metadata==8.9.0 torchsde==0.2.6 trampoline==0.1.2"

rm -rf "$DEST.partial"
mkdir -p "$DEST.partial/whl" "$DEST.partial/fixtures/hotshot-xl-tiny"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST.partial/whl" $WHEELS
cp "$REPO/tests/fixtures/hotshot_xl_unet_keys.json" "$DEST.partial/fixtures/"
touch "$DEST.partial/fixtures/hotshot-xl-tiny/.keep"

export XZ_OPT=-9
tar -C "$(dirname "$COMFYUI_SRC")" -cJf "$DEST.partial/ComfyUI.tar.xz" \
    --exclude=.git --exclude=.github --exclude=.ci --exclude=tests --exclude=tests-unit \
    --exclude=comfy_api_nodes --exclude=script_examples --exclude=__pycache__ --exclude='*.pyc' \
    --exclude='*/sd1_tokenizer/*' --exclude='*/text_encoders/*.json' --exclude='*/text_encoders/*tokenizer*/*' \
    --exclude='*/text_encoders/*.model' --exclude='*/text_encoders/*.gz' \
    --exclude='*/output/*' --exclude='*/input/*' --exclude='*/temp/*' --exclude='*/user/*' \
    --transform "s,^$(basename "$COMFYUI_SRC"),ComfyUI," "$(basename "$COMFYUI_SRC")"
tar -C "$(dirname "$ADE_SRC")" -cJf "$DEST.partial/ADE.tar.xz" \
    --exclude=.git --exclude=.github --exclude=documentation --exclude=web --exclude=__pycache__ \
    --exclude='*.pyc' --transform "s,^$(basename "$ADE_SRC"),ADE," "$(basename "$ADE_SRC")"

rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
du -ah "$DEST" | sort -h | tail -12
