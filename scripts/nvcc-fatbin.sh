#!/usr/bin/env bash
# Compiles the CUDA kernels of based4j-cuda into one fatbin: sm_80 and sm_90a machine code plus compute_90 PTX
# (which the driver compiles for newer GPUs). Called by the Maven build; skipped when the fatbin is newer than
# every source. Usage: nvcc-fatbin.sh SOURCE_DIR OUTPUT_FILE
set -euo pipefail
src="$1"
out="$2"
NVCC="${NVCC:-}"
if [ -z "$NVCC" ]; then
    for c in nvcc "${CUDA_HOME:-/nonexistent}/bin/nvcc" /usr/local/cuda/bin/nvcc; do
        if command -v "$c" >/dev/null 2>&1; then NVCC="$(command -v "$c")"; break; fi
    done
fi
if [ -z "$NVCC" ]; then
    echo "based4j-cuda: nvcc (the CUDA compiler) was not found on PATH, in \$CUDA_HOME/bin or /usr/local/cuda/bin." >&2
    echo "based4j-cuda: install the CUDA toolkit (13.x), or build without GPU kernels: -Dbased4j.skipKernels=true" >&2
    exit 1
fi
if [ -f "$out" ] && [ -z "$(find "$src" -newer "$out" -print -quit)" ]; then
    exit 0
fi
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$NVCC" -fatbin -std=c++17 -O3 -lineinfo \
    -gencode arch=compute_80,code=sm_80 \
    -gencode arch=compute_90a,code=sm_90a \
    -gencode arch=compute_90,code=compute_90 \
    -I "$src" -o "$tmp" "$src/based4j_kernels.cu"
mv "$tmp" "$out"
