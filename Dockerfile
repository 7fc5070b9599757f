# syntax=docker/dockerfile:1
#
# tierd container image.
#
#   docker build -t tierd:latest .
#   docker run --rm -v "$PWD/tierd.toml:/etc/tierd/tierd.toml:ro" -v tierd-data:/var/lib/tierd tierd:latest
#
# The image serves whatever /etc/tierd/tierd.toml says (mount it; see
# deploy/kubernetes/tierd-sidecar.yaml). Keep the listeners on loopback: in a
# Kubernetes pod the storage server shares the network namespace, so
# 127.0.0.1:10809 (NBD) and 127.0.0.1:9464 (admin API) reach tierd.
#
# amd64 only as written: .cargo/config.toml points ROCKSDB_LIB_DIR and
# SNAPPY_LIB_DIR at /usr/lib/x86_64-linux-gnu.

############################################################################
# Build: Debian 12 with its RocksDB 7.8.3, as scripts/deps.sh sets up a host.
FROM rust:1-bookworm AS build

# librocksdb-dev/libsnappy-dev: link the system RocksDB instead of compiling it
# (see README "Why system RocksDB"); libclang-dev: bindgen for its C API.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librocksdb-dev libsnappy-dev libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
RUN test -e /usr/lib/x86_64-linux-gnu/librocksdb.so \
 || { echo "librocksdb.so is not in /usr/lib/x86_64-linux-gnu (see .cargo/config.toml): amd64 only" >&2; exit 1; }

WORKDIR /src
# The whole workspace, .cargo/config.toml included (it carries ROCKSDB_LIB_DIR
# and SNAPPY_LIB_DIR); .dockerignore keeps target/ and .git/ out.
COPY . .

# Only the cargo registry is cached between builds; target/ stays in the layer,
# so the binary below is at /src/target/release/tierd.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p tiering --bin tierd

############################################################################
# Runtime: the shared libraries `ldd tierd` lists (their Debian packages;
# tests/tests/dockerfile.rs checks the list is complete), curl for HEALTHCHECK,
# and CA certificates for S3 and Azure over TLS.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libc6 libgcc-s1 libstdc++6 \
      librocksdb7.8 libgflags2.2 libsnappy1v5 zlib1g libbz2-1.0 liblz4-1 libzstd1 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it (the
# sidecar manifest runs as 10001 with fsGroup 10001).
RUN groupadd --system --gid 10001 tierd \
 && useradd --system --uid 10001 --gid tierd --home-dir /var/lib/tierd --no-create-home \
      --shell /usr/sbin/nologin tierd \
 && install -d -o tierd -g tierd -m 0750 /var/lib/tierd \
 && install -d -m 0755 /etc/tierd

COPY --from=build /src/target/release/tierd /usr/local/bin/tierd

USER 10001:10001
WORKDIR /var/lib/tierd
VOLUME ["/var/lib/tierd"]

# NBD and the admin HTTP API (/healthz, /readyz, /metrics, /v1/...).
EXPOSE 10809 9464

# For docker/podman; Kubernetes ignores HEALTHCHECK and uses the probes in the
# manifest. Assumes http_listen = "127.0.0.1:9464" in the mounted config.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9464/healthz"]

# tierd handles SIGTERM itself (drain, flush heat, fdatasync, exit 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tierd"]
CMD ["serve", "--config", "/etc/tierd/tierd.toml"]
