# harmamba-serve container images. NOT BUILT OR RUN HERE: no Docker engine
# runs on the development machines; this file is kept simple and checked by
# reading (see README.md, "Container image").
#
# CPU image (Debian 12, the same packages as CI, scripts/setup.sh):
#   docker build -t harmamba-serve:cpu .
# CUDA image (NVIDIA CUDA base + LibTorch for CUDA):
#   docker build --target runtime-cuda -t harmamba-serve:cuda .
# Run:
#   docker run --rm -p 50051:50051 -p 9464:9464 -v $PWD/models:/models:ro \
#     harmamba-serve:cpu
# (models baked into the image from models/ are served when no volume
# replaces /models.)

# ---------------------------------------------------------------------------
# CPU build: Debian 12 packages only.
FROM debian:12 AS build-cpu
ARG DEBIAN_FRONTEND=noninteractive
# Portable kernels: the image may run on another CPU than the build's
# (HARMAMBA_NATIVE would bake in -march=native). x86-64-v3 = AVX2 + FMA.
ARG CPU_FLAGS="-march=x86-64-v3"
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config git python3 \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libtorch-dev libopenblas0-pthread libblas-dev \
      libabsl-dev prometheus-cpp-dev libcpp-httplib-dev nlohmann-json3-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DHARMAMBA_NATIVE=OFF -DHARMAMBA_CUDA=OFF \
      -DHARMAMBA_BUILD_TESTS=OFF -DHARMAMBA_BUILD_BENCH=OFF \
      -DCMAKE_CXX_FLAGS="${CPU_FLAGS}" \
    && cmake --build /build --target harmamba-server harmamba \
    && mkdir -p /out/bin /out/models \
    && cp /build/server/harmamba-server /build/tools/harmamba /out/bin/ \
    && if [ -d models ]; then cp -r models/. /out/models/; fi

# CPU runtime: the shared libraries the two binaries need, nothing to build.
FROM debian:12-slim AS runtime-cpu
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
      libtorch1.13 libopenblas0-pthread \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
      libprometheus-cpp-core1.0 libcpp-httplib0.11 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin harmamba
COPY --from=build-cpu /out/bin/ /usr/local/bin/
COPY --from=build-cpu /out/models/ /models/
USER harmamba
# gRPC API and Prometheus /metrics.
EXPOSE 50051 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["harmamba", "health", "--target", "127.0.0.1:50051", "--timeout-ms", "3000"]
ENTRYPOINT ["harmamba-server", "--model_dir=/models", \
            "--address=0.0.0.0:50051", "--metrics_address=0.0.0.0:9464"]

# ---------------------------------------------------------------------------
# CUDA build: NVIDIA's CUDA image (Ubuntu 24.04), gRPC & co. from Ubuntu,
# LibTorch for CUDA from pytorch.org (Debian's LibTorch is CPU-only).
FROM nvidia/cuda:13.0.0-devel-ubuntu24.04 AS build-cuda
ARG DEBIAN_FRONTEND=noninteractive
# A LibTorch built for the image's CUDA major version; check
# https://pytorch.org/get-started/locally/ (LibTorch, C++) for the current URL.
ARG LIBTORCH_URL="https://download.pytorch.org/libtorch/cu130/libtorch-shared-with-deps-2.9.0%2Bcu130.zip"
ARG CUDA_ARCHITECTURES=90
ARG CPU_FLAGS="-march=x86-64-v3"
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config git python3 curl unzip \
      ca-certificates \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libopenblas0-pthread libblas-dev \
      libabsl-dev prometheus-cpp-dev libcpp-httplib-dev nlohmann-json3-dev \
    && rm -rf /var/lib/apt/lists/* \
    && curl -fsSL -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
    && unzip -q /tmp/libtorch.zip -d /opt && rm /tmp/libtorch.zip
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH=/opt/libtorch \
      -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
      -DHARMAMBA_CUDA=ON -DHARMAMBA_NATIVE=OFF \
      -DHARMAMBA_BUILD_TESTS=OFF -DHARMAMBA_BUILD_BENCH=OFF \
      -DCMAKE_CXX_FLAGS="${CPU_FLAGS}" \
    && cmake --build /build --target harmamba-server harmamba \
    && mkdir -p /out/bin /out/models \
    && cp /build/server/harmamba-server /build/tools/harmamba /out/bin/ \
    && if [ -d models ]; then cp -r models/. /out/models/; fi

# CUDA runtime: CUDA runtime libraries + LibTorch's libraries. Run with
# `docker run --gpus all ...` (NVIDIA Container Toolkit).
FROM nvidia/cuda:13.0.0-runtime-ubuntu24.04 AS runtime-cuda
ARG DEBIAN_FRONTEND=noninteractive
# The -dev packages of the build stage pull in exactly the runtime libraries
# it linked, whatever Ubuntu calls them (its t64 renames); the headers cost
# some size but keep this stage correct without a list of library names.
RUN apt-get update && apt-get install -y --no-install-recommends \
      libopenblas0-pthread libgrpc++-dev libprotobuf-dev libabsl-dev \
      prometheus-cpp-dev libcpp-httplib-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin harmamba
COPY --from=build-cuda /opt/libtorch/lib/ /opt/libtorch/lib/
ENV LD_LIBRARY_PATH=/opt/libtorch/lib
COPY --from=build-cuda /out/bin/ /usr/local/bin/
COPY --from=build-cuda /out/models/ /models/
USER harmamba
EXPOSE 50051 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["harmamba", "health", "--target", "127.0.0.1:50051", "--timeout-ms", "3000"]
ENTRYPOINT ["harmamba-server", "--model_dir=/models", \
            "--address=0.0.0.0:50051", "--metrics_address=0.0.0.0:9464"]

# The default target (last stage otherwise): the CPU image.
FROM runtime-cpu
