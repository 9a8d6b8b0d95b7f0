# Tessera container image.
#   docker build -t tessera .
# Runs `tessera serve --migrate` as a non-root user; configure it with
# TESSERA__* environment variables (see docker-compose.yml and README.md).
# The defaults (config/*.yaml) are compiled into the binary; mount a directory
# and set TESSERA_CONFIG_DIR to add YAML files on top.

# ---- build ------------------------------------------------------------------
# The slim Rust image already ships gcc and libc6-dev, which is all that
# aws-lc-sys (cc builder, pre-generated bindings) and zstd-sys need: no cmake,
# no OpenSSL, no pkg-config.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /build

# 1. Dependencies only, against placeholder sources, so that this layer stays
#    cached until Cargo.toml or Cargo.lock change. The verifier kit is a
#    workspace member (and a dev-dependency): cargo needs its manifest and
#    targets to load the workspace, though `-p tessera` never builds it. The
#    DPoP crate (dpop/) is a dependency: its own dependencies build here.
COPY Cargo.toml Cargo.lock ./
COPY verifier/Cargo.toml ./verifier/
COPY dpop/Cargo.toml ./dpop/
RUN mkdir -p src verifier/src verifier/benches dpop/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs verifier/src/lib.rs dpop/src/lib.rs \
 && echo 'fn main() {}' > verifier/benches/verify.rs \
 && cargo build --release --locked -p tessera \
 && rm -rf src verifier/src verifier/benches dpop/src

# 2. The real crate. Migrations (sqlx::migrate!), openapi.yaml (served at
#    /openapi.yaml) and config/*.yaml (the built-in defaults) are embedded at
#    compile time; queries are checked at compile time against the query data
#    committed in .sqlx/ (SQLX_OFFLINE: never against a database, there is
#    none here). Touch the sources so cargo never mistakes them for the
#    (newer) placeholders it just built.
ENV SQLX_OFFLINE=true
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY openapi.yaml ./openapi.yaml
COPY config ./config
COPY verifier ./verifier
COPY dpop ./dpop
COPY src ./src
RUN touch src/main.rs src/lib.rs dpop/src/*.rs \
 && cargo build --release --locked -p tessera \
 && cp target/release/tessera /tessera

# ---- runtime ----------------------------------------------------------------
# Tessera makes no outbound TLS calls (Postgres is plain TCP), so no
# ca-certificates; the binary needs only glibc and libgcc_s from the base.
FROM debian:bookworm-slim AS runtime

# A fixed unprivileged uid (10001) that no account of the base image uses.
# Not --system: its range is 100-999, and useradd warns about 10001 there.
RUN groupadd --gid 10001 tessera \
 && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init \
      --home-dir /nonexistent --shell /usr/sbin/nologin tessera

# On the PATH, so that `docker compose exec tessera tessera user create ...`
# reads like every other tessera command.
COPY --from=build /tessera /usr/local/bin/tessera

ENV TESSERA_ENV=production

USER 10001:10001

# 8080: public API. 8081: admin API (publish it on a private interface only).
EXPOSE 8080 8081

# `tessera healthcheck` GETs /readyz on the configured public port and exits 0/1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["tessera", "healthcheck"]

ENTRYPOINT ["tessera"]
CMD ["serve", "--migrate"]
