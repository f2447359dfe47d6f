# syntax=docker/dockerfile:1
FROM rust:1-bookworm AS builder
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mcpgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home mcpgate
COPY --from=builder /src/target/release/mcpgate /usr/local/bin/mcpgate
COPY conf/mcpgate.yaml /etc/mcpgate/mcpgate.yaml
USER mcpgate
WORKDIR /data
ENV HOST=0.0.0.0 \
    PORT=4444 \
    DATABASE_URL=sqlite:///data/mcpgate.db \
    MCPGATE_CONFIG=/etc/mcpgate/mcpgate.yaml
EXPOSE 4444 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:4444/health || exit 1
ENTRYPOINT ["mcpgate"]
CMD ["serve"]
