# The app image: a release build in the official Rust image, run from
# distroless (the same Debian release, so glibc matches) as a non-root user,
# with no shell. RUST_IMAGE and RUNTIME_IMAGE may name other images of the
# same kind.
ARG RUST_IMAGE=rust:1.98-slim-trixie
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian13:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src

# Dependencies first, in their own layer: a change under src/ rebuilds only
# the app. A stub crate with the real manifest builds them.
COPY Cargo.toml Cargo.lock ./
COPY vendor/ vendor/
# A build context prepared for offline builds carries vendor/cargo-config.toml
# (crates.io replaced by vendored sources).
RUN set -eux; \
    if [ -f vendor/cargo-config.toml ]; then \
        mkdir -p .cargo && cp vendor/cargo-config.toml .cargo/config.toml; \
    fi; \
    mkdir -p src tests/e2e; \
    echo 'fn main() {}' >src/main.rs; \
    echo 'fn main() {}' >tests/e2e/main.rs; \
    : >src/lib.rs; \
    cargo build --release --locked --bin webcluster; \
    rm -rf src

COPY src/ src/
# COPY keeps the sources' old mtimes; touch them so cargo rebuilds over the stub.
RUN set -eux; \
    touch src/main.rs src/lib.rs; \
    cargo build --release --locked --bin webcluster; \
    mkdir -p /out/bin /out/logs; \
    cp target/release/webcluster /out/bin/webcluster; \
    /out/bin/webcluster --version

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="webcluster" \
      org.opencontainers.image.description="Hit counter app of WebClusterBalancer: sticky, load-balanced replicas behind nginx over MySQL stored procedures" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=build /out/bin/webcluster /usr/local/bin/webcluster
# Writable by the app when nothing is mounted there.
COPY --from=build --chown=65532:65532 /out/logs /var/log/webcluster

ENV LISTEN_ADDR=0.0.0.0:8000 \
    LOG_DIR=/var/log/webcluster
USER 65532:65532
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/webcluster", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/webcluster"]
