# qnetd: the API server, job store and dashboard. No LibTorch.
#   docker build -f docker/server.Dockerfile -t qnet/qnetd .
FROM debian:bookworm AS build
RUN apt-get update && apt-get install -y -q --no-install-recommends build-essential cmake ninja-build \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev libssl-dev \
      libboost-dev libboost-system-dev nlohmann-json3-dev prometheus-cpp-dev libsqlite3-dev \
      libcli11-dev libspdlog-dev libjpeg62-turbo-dev libspng-dev libarchive-dev pkg-config && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DQNET_BUILD_ENGINE=OFF \
      -DQNET_BUILD_TESTS=OFF -DQNET_BUILD_BENCHMARKS=OFF \
 && cmake --build /build --target qnetd qnet

FROM debian:bookworm
RUN apt-get update && apt-get install -y -q --no-install-recommends libgrpc++1.51 libprotobuf32 \
      libsqlite3-0 libspdlog1.10 libprometheus-cpp-core1.0 libssl3 libjs-chart.js libjpeg62-turbo libspng0 libarchive13 \
      dataset-fashion-mnist && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/server/qnetd /build/client/qnet /usr/local/bin/
EXPOSE 50051 8080
VOLUME /var/lib/qnet
ENTRYPOINT ["qnetd", "--listen", "0.0.0.0:50051", "--http-listen", "0.0.0.0:8080", "--data-dir", "/var/lib/qnet"]
