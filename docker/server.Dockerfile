# qnetd: the API server, job store and dashboard. No LibTorch. Runs as the unprivileged user qnet
# (uid 10001), which owns the data volume /var/lib/qnet.
#   docker build -f docker/server.Dockerfile -t qnet/qnetd .
# Debian packages are not pinned (hadolint DL3008): the image takes bookworm's security updates
# when rebuilt.
FROM debian:bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y -q --no-install-recommends build-essential cmake ninja-build \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev libssl-dev \
      libboost-dev libboost-system-dev nlohmann-json3-dev prometheus-cpp-dev libsqlite3-dev \
      libcli11-dev libspdlog-dev libjpeg62-turbo-dev libspng-dev libarchive-dev libminizip-dev pkg-config && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DQNET_BUILD_ENGINE=OFF \
      -DQNET_BUILD_TESTS=OFF -DQNET_BUILD_BENCHMARKS=OFF \
 && cmake --build /build --target qnetd qnet

FROM debian:bookworm
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y -q --no-install-recommends libgrpc++1.51 libprotobuf32 \
      libsqlite3-0 libspdlog1.10 libprometheus-cpp-core1.0 libssl3 libjs-chart.js libjpeg62-turbo libspng0 libarchive13 libminizip1 \
      dataset-fashion-mnist && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/server/qnetd /build/client/qnet /usr/local/bin/
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/qnet \
      --shell /usr/sbin/nologin qnet \
 && mkdir -p /var/lib/qnet && chown qnet:qnet /var/lib/qnet && chmod 0750 /var/lib/qnet
USER 10001:10001
EXPOSE 50051 8080
VOLUME /var/lib/qnet
# /healthz over bash's /dev/tcp: the image carries no HTTP client.
HEALTHCHECK --interval=30s --timeout=5s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["qnetd", "--listen", "0.0.0.0:50051", "--http-listen", "0.0.0.0:8080", "--data-dir", "/var/lib/qnet"]
