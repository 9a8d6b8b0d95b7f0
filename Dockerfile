# Tessera container image.
#   docker build -t tessera .
# Runs `tessera serve --migrate` as a non-root user; configure it with
# TESSERA__* environment variables (see docker-compose.yml and README.md).

# ---- build ------------------------------------------------------------------
# The slim Rust image already ships gcc and libc6-dev, which is all that
# aws-lc-sys (cc builder, pre-generated bindings) and zstd-sys need: no cmake,
# no OpenSSL, no pkg-config.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /build

# 1. Dependencies only, against placeholder sources, so that this layer stays
#    cached until Cargo.toml or Cargo.lock change. The verifier kit is a
#    workspace member (and a dev-dependency): cargo needs its manifest and
#    targets to load the workspace, though `-p tessera` never builds it.
COPY Cargo.toml Cargo.lock ./
COPY verifier/Cargo.toml ./verifier/
RUN mkdir -p src verifier/src verifier/benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs verifier/src/lib.rs \
 && echo 'fn main() {}' > verifier/benches/verify.rs \
 && cargo build --release --locked -p tessera \
 && rm -rf src verifier/src verifier/benches

# 2. The real crate. Migrations (sqlx::migrate!) and openapi.yaml (served at
#    /openapi.yaml) are embedded at compile time; queries are checked at
#    compile time against the query data committed in .sqlx/ (SQLX_OFFLINE:
#    never against a database, there is none here). Touch the sources so
#    cargo never mistakes them for the (newer) placeholders it just built.
ENV SQLX_OFFLINE=true
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY openapi.yaml ./openapi.yaml
COPY verifier ./verifier
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked -p tessera \
 && cp target/release/tessera /tessera

# ---- runtime ----------------------------------------------------------------
# Tessera makes no outbound TLS calls (Postgres is plain TCP), so no
# ca-certificates; the binary needs only glibc and libgcc_s from the base.
FROM debian:bookworm-slim AS runtime

RUN groupadd --system --gid 10001 tessera \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin tessera

# The service reads config/ relative to its working directory;
# TESSERA_CONFIG_DIR pins it for commands run with another working directory.
WORKDIR /app
COPY --from=build /tessera /app/tessera
COPY config/ /app/config/

ENV TESSERA_ENV=production \
    TESSERA_CONFIG_DIR=/app/config

USER 10001:10001

# 8080: public API. 8081: admin API (publish it on a private interface only).
EXPOSE 8080 8081

# `tessera healthcheck` GETs /readyz on the configured public port and exits 0/1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/app/tessera", "healthcheck"]

ENTRYPOINT ["/app/tessera"]
CMD ["serve", "--migrate"]
