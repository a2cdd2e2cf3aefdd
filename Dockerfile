# syntax=docker/dockerfile:1
# Build: docker build -t spanglish .
# Run:   docker run -p 8080:8080 -e DATABASE_URL=... -e JWT_SECRET=... -e PUBLIC_URL=... spanglish

FROM rust:1.95-slim-bookworm AS build
# npm fetches the playground's GraphiQL assets, which the build embeds.
RUN apt-get update \
 && apt-get install -y --no-install-recommends npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY migration migration
COPY playground playground
COPY templates templates
COPY src src
RUN cargo build --release --locked --bin spanglish

FROM debian:bookworm-slim AS runtime
# ca-certificates for outbound TLS (payment and email providers); curl for
# the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin spanglish
WORKDIR /app
COPY --from=build /src/target/release/spanglish /usr/local/bin/spanglish
COPY config config
RUN mkdir -p /app/data && chown spanglish:spanglish /app/data
USER spanglish
ENV APP_ENV=production HOST=0.0.0.0 PORT=8080 DATA_DIR=/app/data MEDIA_DIR=/app/data/media
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["spanglish"]
CMD ["serve"]
