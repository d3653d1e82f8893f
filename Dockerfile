# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from a slim Debian image as a non-root user.
#
#   docker build -t oada-gateway .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -e OADA_ISSUER=https://api.grounddata.example \
#     -v "$PWD/keys:/etc/oada-gateway/keys:ro" -v "$PWD/clients:/etc/oada-gateway/clients:ro" \
#     oada-gateway

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY templates ./templates
COPY benches ./benches
RUN cargo build --release --locked --bin oada-gateway \
 && strip target/release/oada-gateway

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin oada
COPY --from=build /src/target/release/oada-gateway /usr/local/bin/oada-gateway
COPY gateway.yaml /etc/oada-gateway/gateway.yaml
WORKDIR /etc/oada-gateway
USER 10001
# Listen on all interfaces inside the container; the issuer must then be an https URL
# (set OADA_ISSUER). Keys and partner documents are mounted, never baked into the image.
ENV OADA_LISTEN=0.0.0.0:8080 \
    OADA_ADMIN_LISTEN=0.0.0.0:9090 \
    OADA_GATEWAY_CONFIG=/etc/oada-gateway/gateway.yaml
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["oada-gateway", "healthcheck", "--url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["oada-gateway", "--log-format", "json"]
CMD ["run"]
