#!/usr/bin/env bash
# Compiles the CUDA kernels of based4j-cuda into one fatbin: sm_80 and sm_90a machine code plus compute_90 PTX
# (which the driver compiles for newer GPUs). Called by the Maven build; skipped when the fatbin is newer than
# every source. Without nvcc (no CUDA toolkit) the build goes on without kernels and says so in one line: everything
# but --device cuda works. Usage: nvcc-fatbin.sh SOURCE_DIR OUTPUT_FILE
# nvcc is taken from $NVCC, else the PATH, $CUDA_HOME/bin and $BASED4J_CUDA_DEFAULT_HOME/bin (default /usr/local/cuda).
set -euo pipefail
src="$1"
out="$2"
if [ -f "$out" ] && [ -z "$(find "$src" -newer "$out" -print -quit)" ]; then
    exit 0
fi
default_home="${BASED4J_CUDA_DEFAULT_HOME:-/usr/local/cuda}"
NVCC="${NVCC:-}"
if [ -z "$NVCC" ]; then
    for c in nvcc "${CUDA_HOME:-/nonexistent}/bin/nvcc" "$default_home/bin/nvcc"; do
        if command -v "$c" >/dev/null 2>&1; then NVCC="$(command -v "$c")"; break; fi
    done
fi
if [ -z "$NVCC" ]; then
    # kernels of older sources must not be packed with newer Java code
    rm -f "$out"
    echo "based4j-cuda: no nvcc on PATH, in \$CUDA_HOME/bin or $default_home/bin: building without GPU kernels" \
        "(--device cuda needs them: install the CUDA toolkit 13 and rebuild)" >&2
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
