# qnet-worker on CPU or CUDA: LibTorch comes from PyTorch's wheel (CUDA-enabled; runs on CPU when
# the node has no GPU). For the CUDA worker build with --build-arg CUDA=1 on a CUDA base image:
#   docker build -f docker/worker.Dockerfile -t qnet/worker-cpu .
#   docker build -f docker/worker.Dockerfile --build-arg BASE=nvidia/cuda:13.0.0-devel-debian12 -t qnet/worker-cuda .
ARG BASE=debian:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y -q --no-install-recommends build-essential cmake ninja-build \
      python3 python3-pip libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev libssl-dev libboost-dev nlohmann-json3-dev prometheus-cpp-dev libsqlite3-dev \
      libcli11-dev libspdlog-dev zlib1g-dev libjpeg62-turbo-dev libspng-dev libarchive-dev pkg-config && rm -rf /var/lib/apt/lists/*
RUN python3 -m pip install --break-system-packages torch onnx
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DQNET_BUILD_TESTS=OFF \
      -DQNET_BUILD_BENCHMARKS=OFF -DQNET_PYTHON=python3 \
 && cmake --build /build --target qnet-worker && cp /build/workers/worker/qnet-worker /usr/local/bin/ \
 && rm -rf /build
ENTRYPOINT ["qnet-worker", "serve", "--cache-dir", "/var/cache/qnet"]
