# pitwall: one image for the ingestion service and the score job.
#
#   docker build -t pitwall:0.1.0 --build-arg PITWALL_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run --rm pitwall:0.1.0 --help
#
# Stage 1 builds the release binary; stage 2 is a slim Debian with only
# what the binary loads at run time (glibc, OpenSSL for librdkafka, CA
# certificates for AWS and Kafka over TLS), running as an unprivileged user.

FROM rust:1.95-slim-bookworm AS build
# librdkafka is built from source by rdkafka-sys: it needs a C toolchain,
# make and perl, and links OpenSSL (TLS to MSK) and zlib.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake perl pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# pitwall_build_info{commit}: docker build --build-arg PITWALL_COMMIT=$(git rev-parse --short=12 HEAD)
ARG PITWALL_COMMIT=""
ENV PITWALL_COMMIT=${PITWALL_COMMIT}
# Cache mounts keep the registry and target dir between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pitwall \
 && install -D target/release/pitwall /out/pitwall

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pitwall \
 && useradd --system --uid 10001 --gid pitwall --home-dir /home/pitwall --create-home pitwall
COPY --from=build /out/pitwall /usr/local/bin/pitwall
COPY contracts/ /etc/pitwall/contracts/
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/pitwall
# The status page, /healthz, /readyz and /metrics of `pitwall ingest run`
# (9464) and of `pitwall score watch` (9465), as the chart's values.
EXPOSE 9464 9465
ENTRYPOINT ["/usr/local/bin/pitwall"]
CMD ["--help"]
