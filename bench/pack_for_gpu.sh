#!/usr/bin/env bash
# Packs a -DPTQ_CUDA=ON build for a GPU machine that has CUDA 13 but none of
# ptq's Debian libraries: ptq, libptq_cuda.so and test_cuda, stripped, with
# the non-system shared libraries they load (HDF5, libaec, OpenBLAS, LAPACK(E),
# gfortran, oneTBB, yaml-cpp, utf8proc), as one xz tarball (about 9.5 MiB).
# There: tar -xJf bundle.tar.xz -C DIR, then run DIR/ptq with
# LD_LIBRARY_PATH=DIR/lib:DIR:/usr/local/cuda/lib64.
#   bench/pack_for_gpu.sh BUILD_DIR OUT.tar.xz
set -euo pipefail
build=$1 out=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/lib"
cp "$build/pipeline/ptq" "$build/pipeline/libptq_cuda.so" "$build/tests/test_cuda" "$stage/"
strip "$stage/ptq" "$stage/test_cuda" "$stage/libptq_cuda.so"
for l in libaec.so.0 libsz.so.2 libhdf5_serial.so.103 liblapacke.so.3 libtmglib.so.3 \
  libgfortran.so.5 libquadmath.so.0 libtbb.so.12 libyaml-cpp.so.0.7 libutf8proc.so.2; do
  cp -L "/lib/x86_64-linux-gnu/$l" "$stage/lib/"
done
for l in libopenblas.so.0 libblas.so.3 liblapack.so.3; do
  cp -L "/usr/lib/x86_64-linux-gnu/openblas-pthread/$l" "$stage/lib/"
done
strip --strip-unneeded "$stage"/lib/*
tar -C "$stage" -cf - . | xz -9 -T0 >"$out"
