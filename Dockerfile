# syntax=docker/dockerfile:1
#
# The minitter-server image: a release build of the one binary on a slim Debian.
#
#   docker build -t minitter-server:latest .
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts below.
# Nothing here has been built on the development machine (it has no Docker daemon);
# `deploy/check` lints this file with hadolint. See deploy/README.md.

# The workspace's declared rust-version; a newer 1.x also builds it
# (`--build-arg RUST_VERSION=1.9x`).
ARG RUST_VERSION=1.88

# ---------------------------------------------------------------------------------------
# Builder. The full `rust:*-bookworm` image already has gcc and make, which aws-lc-sys
# (rustls' crypto, pulled in by the S3 client) and libsqlite3-sys compile with. Same Debian
# release as the runtime stage, so the binary's glibc matches.
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# The whole workspace is copied: `cargo build -p` needs every member's manifest, and a
# "manifests first, sources later" layer trick does not work well in a workspace with
# path dependencies. The cache mounts below make rebuilds incremental instead.
COPY . .

# Cache mounts keep the crate downloads and the target directory between builds (they are
# not part of any layer), so the binary is copied out of the cached target dir in this
# same step. Stripping symbols at build time (no file edits needed) keeps the image small;
# --locked builds exactly Cargo.lock.
# `.git` is not copied (.dockerignore), so the revision in `x-minitter-version` comes from
# the build argument: `docker build --build-arg MINITTER_GIT_REVISION=$(git rev-parse
# --short HEAD) .` (without it the image reports `unknown`).
ARG MINITTER_GIT_REVISION=unknown
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p minitter-server \
 && install -D -m 0755 target/release/minitter-server /out/minitter-server

# ---------------------------------------------------------------------------------------
# Runtime: only what the binary needs at run time.
FROM debian:bookworm-slim AS runtime

# - ca-certificates: TLS to an S3 endpoint (and to any HTTPS service the AWS credential
#   chain calls).
# - busybox, for the HEALTHCHECK's HTTP GET: the binary has no health-check subcommand and
#   the slim image has no HTTP client. Debian's busybox is one ~1 MB binary with no library
#   dependencies (and installs no applet symlinks), whereas curl drags in libcurl and a
#   dozen libraries (ssh, ldap, rtmp, idn, …) several times that size, each a CVE surface.
#   The slim image already has a shell, so busybox adds no new capability an attacker
#   would lack.
# Versions are not pinned: the tag tracks bookworm's point releases and their security
# fixes, and pinned Debian versions disappear from the archive, breaking rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates busybox \
 && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid/gid (10001): numeric so that Kubernetes' runAsNonRoot can verify
# it, high so that it maps to no user on the host.
RUN groupadd --system --gid 10001 minitter \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/minitter \
      --no-create-home --shell /usr/sbin/nologin minitter \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/minitter

COPY --from=builder /out/minitter-server /usr/local/bin/minitter-server

# The data directory holds the SQLite database, local pictures and development secrets
# when PostgreSQL and S3 are not configured. It is a volume so that such a single-instance
# deployment keeps its data across container replacements; with PostgreSQL and S3 it
# stays (nearly) empty.
ENV MINITTER_DATA_DIR=/var/lib/minitter \
    MINITTER_BIND=0.0.0.0:8080 \
    MINITTER_LOG_JSON=true
WORKDIR /var/lib/minitter
VOLUME ["/var/lib/minitter"]

USER 10001:10001
EXPOSE 8080

# Liveness only: /healthz is 200 while the process serves. Readiness (/readyz, 503 while
# the database is unreachable) is for load balancers; a container should not be marked
# unhealthy, and perhaps restarted, because the database is. The port follows
# MINITTER_BIND, so overriding the bind address does not break the check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/bin/sh", "-c", "exec busybox wget -q -T 2 -O /dev/null \"http://127.0.0.1:${MINITTER_BIND##*:}/healthz\""]

# On SIGTERM the server drains (readiness 503, MINITTER_DRAIN_SECONDS=5 of serving, then
# in-flight requests finish) and exits within MINITTER_SHUTDOWN_TIMEOUT_SECONDS (20); it
# is PID 1 itself (exec form, no shell in between), so the signal reaches it. It starts no
# child processes, so it needs no init to reap zombies. Give `docker stop` more than 20 s
# (`-t 25`; compose's stop_grace_period) so that the stop is not cut short by SIGKILL.
STOPSIGNAL SIGTERM

# Arguments go to the binary: `docker run … minitter-server admin list-keys`.
ENTRYPOINT ["/usr/local/bin/minitter-server"]
