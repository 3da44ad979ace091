# qnet-worker on CPU or CUDA: LibTorch comes from PyTorch's wheel (CUDA-enabled; runs on CPU when
# the node has no GPU). For the CUDA worker build with --build-arg CUDA=1 on a CUDA base image:
#   docker build -f docker/worker.Dockerfile -t qnet/worker-cpu .
#   docker build -f docker/worker.Dockerfile --build-arg BASE=nvidia/cuda:13.0.0-devel-debian12 -t qnet/worker-cuda .
# Runs as the unprivileged user qnet (uid 10001), which owns the cache /var/cache/qnet; each job
# runs in qnet-worker's sandbox (docs/ARCHITECTURE.md, "Sandbox"), hence libseccomp.
# Neither Debian nor PyPI packages are pinned (hadolint DL3008, DL3013): a rebuild takes bookworm's
# security updates and the current torch.
#checkov:skip=CKV_DOCKER_7: BASE defaults to the tagged debian:bookworm; CUDA builds pass a tagged nvidia/cuda image
#checkov:skip=CKV_DOCKER_2: the worker serves no port; qnetd's lease expiry detects a stuck worker
ARG BASE=debian:bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y -q --no-install-recommends build-essential cmake ninja-build \
      python3 python3-pip libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev libssl-dev libboost-dev nlohmann-json3-dev prometheus-cpp-dev libsqlite3-dev \
      libcli11-dev libspdlog-dev zlib1g-dev libjpeg62-turbo-dev libspng-dev libarchive-dev \
      libseccomp-dev libminizip-dev pkg-config && rm -rf /var/lib/apt/lists/*
# hadolint ignore=DL3013
RUN python3 -m pip install --no-cache-dir --break-system-packages torch onnx onnxruntime
# ONNX Runtime's API headers, with which the worker scores its ONNX artifacts in ONNX Runtime.
COPY scripts/install-onnxruntime-headers.sh /tmp/
RUN /tmp/install-onnxruntime-headers.sh && rm /tmp/install-onnxruntime-headers.sh
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DQNET_BUILD_TESTS=OFF \
      -DQNET_BUILD_BENCHMARKS=OFF -DQNET_PYTHON=python3 \
 && cmake --build /build --target qnet-worker && cp /build/workers/worker/qnet-worker /usr/local/bin/ \
 && rm -rf /build
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/cache/qnet \
      --shell /usr/sbin/nologin qnet \
 && mkdir -p /var/cache/qnet && chown qnet:qnet /var/cache/qnet && chmod 0750 /var/cache/qnet
USER 10001:10001
ENTRYPOINT ["qnet-worker", "serve", "--cache-dir", "/var/cache/qnet"]
