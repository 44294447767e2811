# syntax=docker/dockerfile:1
# Two images from one file:
#   worker  (docker build --target worker): Python and wasmq only. Workers run modules they
#           fetch from Redis, so they carry no compiler, no bubblewrap, no sources.
#   full    (the default, last stage): wasmq with every toolchain it drives: Go, TinyGo,
#           Zig (through the ziglang wheel) and AssemblyScript (asc from npm, at the version
#           sdk/assemblyscript/package-lock.json pins). Registering sources needs this one.

ARG PYTHON_VERSION=3.12
ARG GO_VERSION=1.25
ARG TINYGO_VERSION=0.39.0
# SHA-256 of TinyGo's release archives (tinygo<version>.linux-<arch>.tar.gz); a download
# that does not match fails the build. Change them together with TINYGO_VERSION.
ARG TINYGO_SHA256_AMD64=a119801579ef0a7a4f3ee285f0caf55241eaa9e115154c2028b696770b47a846
ARG TINYGO_SHA256_ARM64=b2ba04d35e1020f9674ed1133de02721952ba45af2b61fa666fb8144570b02b0
ARG ASSEMBLYSCRIPT_VERSION=0.28.20

# --- build the wheel -------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runtime ./runtime
COPY compiler ./compiler
COPY wasmq ./wasmq
COPY sdk ./sdk
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- the Go toolchain (also what TinyGo builds against) -------------------------------
FROM golang:${GO_VERSION}-bookworm AS go

# --- TinyGo, verified against its pinned checksum before anything uses it --------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS tinygo
ARG TINYGO_VERSION
ARG TINYGO_SHA256_AMD64
ARG TINYGO_SHA256_ARM64
# Set by BuildKit (amd64, arm64): TinyGo publishes an archive for each.
ARG TARGETARCH=amd64
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ADD https://github.com/tinygo-org/tinygo/releases/download/v${TINYGO_VERSION}/tinygo${TINYGO_VERSION}.linux-${TARGETARCH}.tar.gz /tmp/tinygo.tar.gz
RUN case "${TARGETARCH}" in \
        amd64) expected="${TINYGO_SHA256_AMD64}" ;; \
        arm64) expected="${TINYGO_SHA256_ARM64}" ;; \
        *) echo "no TinyGo checksum for ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && echo "${expected}  /tmp/tinygo.tar.gz" | sha256sum --check --strict - \
    && tar -xzf /tmp/tinygo.tar.gz -C /usr/local \
    && rm /tmp/tinygo.tar.gz

# --- what both images share ------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WASMQ_MODULE_DIR=/home/wasmq/wasm_task_functions \
    WASMQ_STATE_DIR=/home/wasmq/.wasmq
RUN useradd --create-home --uid 10001 wasmq
WORKDIR /home/wasmq
ENTRYPOINT ["wasmq"]
CMD ["--help"]

# --- worker: the slim image ------------------------------------------------------------
FROM base AS worker
COPY --from=build /wheels /wheels
RUN WHEEL="$(ls /wheels/wasmq-*.whl)" \
    && pip install --no-cache-dir "${WHEEL}" \
    && rm -rf /wheels
USER 10001
CMD ["worker"]

# --- full: every toolchain (the default target) ----------------------------------------
FROM base AS full
ARG ASSEMBLYSCRIPT_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

COPY --from=go /usr/local/go /usr/local/go
COPY --from=tinygo /usr/local/tinygo /usr/local/tinygo
ENV PATH="/usr/local/tinygo/bin:/usr/local/go/bin:${PATH}"

# bubblewrap sandboxes every compile. Debian's bwrap is not setuid: as the image's
# non-root user it makes unprivileged user namespaces and a fresh /proc, which Docker's
# default seccomp profile and masked /proc refuse. Run the container that registers
# sources with --security-opt seccomp=unconfined --security-opt systempaths=unconfined
# (plus apparmor=unconfined on AppArmor hosts), or register from a host: workers only
# run modules and need neither bwrap nor toolchains (the worker image).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap ca-certificates nodejs npm \
    && npm install --global --no-audit --no-fund "assemblyscript@${ASSEMBLYSCRIPT_VERSION}" \
    && npm cache clean --force \
    && rm -rf /var/lib/apt/lists/* \
    && tinygo version \
    && asc --version

COPY --from=build /wheels /wheels
RUN WHEEL="$(ls /wheels/wasmq-*.whl)" \
    && pip install --no-cache-dir "${WHEEL}[zig]" \
    && rm -rf /wheels

USER 10001
COPY --chown=wasmq:wasmq tasks ./tasks
