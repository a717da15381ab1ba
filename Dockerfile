# Comprobify: one image for both `comprobify migrate` and `comprobify serve`.
#
#   docker build -t comprobify .
#   docker run --rm -e DATABASE_URL=... comprobify migrate
#   docker run --rm -p 8080:8080 -e DATABASE_URL=... -e COMPROBIFY_SECRET_KEY=... comprobify   # serve
#
# docker-compose.yml wires both against PostgreSQL 15.

# ================================
# Build stage
# ================================
# The packages Package.swift names (Hummingbird from 2.28.1, AsyncHTTPClient
# from 1.37.0, swift-log, swift-metrics, ...) declare swift-tools-version 6.2,
# and the service is built and tested with Swift 6.3: the same toolchain here.
# Package.resolved is not kept in the repository: a build resolves the newest
# releases within those lower bounds, as CI's fresh clone does.
FROM swift:6.3-bookworm AS builder

# Headers and pkg-config files for the CLibPQ, COpenSSL and CLibXML2 system
# modules, and jemalloc, which the server links as its allocator.
# Unpinned apt versions: the image tag pins the bookworm suite, and exact versions vanish from the mirror on point releases.
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends libpq-dev libssl-dev libxml2-dev libjemalloc-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Resolve dependencies in their own layer: it is rebuilt only when the manifest
# or the lock file changes (Package.resolved is optional, hence the glob).
COPY Package.* ./
RUN swift package resolve

# SwiftPM checks every declared target's directory, test targets included.
COPY Sources ./Sources
COPY Tests ./Tests

# Static Swift runtime and Foundation: the runtime image needs only the C
# libraries (libpq, OpenSSL, libxml2, jemalloc, libstdc++). The backtracer is kept so a crash
# prints a symbolicated stack in the container log.
RUN swift build -c release --product comprobify --static-swift-stdlib \
    && mkdir -p /staging \
    && cp "$(swift build -c release --show-bin-path)/comprobify" /staging/comprobify \
    && cp -R "$(swift build -c release --show-bin-path)/comprobify_SRI.resources" /staging/comprobify_SRI.resources \
    && cp /usr/libexec/swift/linux/swift-backtrace-static /staging/swift-backtrace-static

# ================================
# Runtime stage
# ================================
FROM debian:bookworm-slim

# libpq5, libssl3, libxml2 and libjemalloc2 are what the binary links against; ca-certificates gives
# sslmode=verify-full a CA bundle to name (sslrootcert=/etc/ssl/certs/ca-certificates.crt:
# libpq 15 does not read it by itself); curl serves the
# HEALTHCHECK; tzdata gives Foundation real time zones.
# Unpinned apt versions: the image tag pins the bookworm suite, and exact versions vanish from the mirror on point releases.
# hadolint ignore=DL3008
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends \
        ca-certificates \
        curl \
        libjemalloc2 \
        libpq5 \
        libssl3 \
        libxml2 \
        libstdc++6 \
        tzdata \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged user with a fixed id, so orchestrators can check runAsNonRoot.
RUN groupadd --system --gid 10001 comprobify \
    && useradd --system --no-log-init --uid 10001 --gid comprobify \
        --home-dir /app --shell /usr/sbin/nologin comprobify

# `comprobify migrate` reads sql/migrations relative to the working directory.
WORKDIR /app
COPY --from=builder /staging/comprobify /usr/local/bin/comprobify
# SRI's official schemas (the SRI target's resources), found beside the binary.
COPY --from=builder /staging/comprobify_SRI.resources /usr/local/bin/comprobify_SRI.resources
COPY --from=builder /staging/swift-backtrace-static /usr/local/libexec/swift-backtrace-static
COPY sql/migrations ./sql/migrations
# The contract, served at GET /openapi.yaml from the working directory.
COPY openapi.yaml ./openapi.yaml
# What every setting does (`comprobify serve --help` points here).
COPY README.md /usr/share/doc/comprobify/README.md

ENV SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/usr/local/libexec/swift-backtrace-static

USER 10001:10001

EXPOSE 8080

# Liveness only (/healthz does not touch the database). Run through sh so the
# URL follows PORT when it is overridden; any curl failure maps to 1 (unhealthy).
# A one-shot `migrate` container can disable it (compose does).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${PORT:-8080}/healthz\" || exit 1"]

ENTRYPOINT ["/usr/local/bin/comprobify"]
CMD ["serve"]
