# syntax=docker/dockerfile:1
#
# Base images are pinned to releases. To pin them to digests from your own
# registry: --build-arg RUST_IMAGE=rust@sha256:... --build-arg
# RUNTIME_IMAGE=debian@sha256:... (the builder and the runtime must share a
# glibc: both are Debian 12 "bookworm").
ARG RUST_IMAGE=rust:1.95.0-bookworm
ARG RUNTIME_IMAGE=debian:12.11-slim

FROM ${RUST_IMAGE} AS builder
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies first, against stub sources: a change to mcpgate's own code
# reuses this layer instead of rebuilding every crate.
COPY Cargo.toml Cargo.lock ./
COPY proxy/Cargo.toml proxy/Cargo.toml
COPY cache-zones/Cargo.toml cache-zones/Cargo.toml
RUN mkdir -p src proxy/src cache-zones/src tests/fixture \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > tests/fixture/server.rs \
    && touch src/lib.rs proxy/src/lib.rs cache-zones/src/lib.rs \
    && cargo build --release --locked --bin mcpgate \
    && rm -rf src proxy/src cache-zones/src tests

# Then the sources; touched so that cargo sees them newer than the stubs.
COPY build.rs ./
COPY migrations migrations
COPY src src
COPY proxy/src proxy/src
COPY cache-zones/src cache-zones/src
COPY tests/fixture tests/fixture
RUN find src proxy/src cache-zones/src tests/fixture -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin mcpgate \
    && cp target/release/mcpgate /usr/local/bin/mcpgate

FROM ${RUNTIME_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home mcpgate
COPY --from=builder /usr/local/bin/mcpgate /usr/local/bin/mcpgate
COPY conf/mcpgate.yaml /etc/mcpgate/mcpgate.yaml
USER mcpgate
WORKDIR /data
# The SQLite database (and, outside production, generated secrets) live
# here: keep it on a volume, or every new container starts from nothing.
VOLUME /data
# Production refuses to start without JWT_SECRET_KEY and
# AUTH_ENCRYPTION_SECRET: a secret generated inside a container is lost with
# it, and with it every token and every stored upstream credential.
ENV ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=4444 \
    EDGE_PORT=8080 \
    DATABASE_URL=sqlite:///data/mcpgate.db \
    MCPGATE_CONFIG=/etc/mcpgate/mcpgate.yaml
EXPOSE 4444 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["mcpgate", "health"]
ENTRYPOINT ["mcpgate"]
CMD ["serve"]
