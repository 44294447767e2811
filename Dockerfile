# syntax=docker/dockerfile:1
# wasmq with every toolchain it drives: Go, TinyGo, Zig (through the ziglang wheel) and
# AssemblyScript (asc from npm, at the version sdk/assemblyscript/package-lock.json pins).

ARG PYTHON_VERSION=3.12
ARG GO_VERSION=1.25
ARG TINYGO_VERSION=0.39.0
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

# --- runtime image ---------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm
ARG TINYGO_VERSION
ARG ASSEMBLYSCRIPT_VERSION
# Set by BuildKit (amd64, arm64): TinyGo publishes a .deb for each.
ARG TARGETARCH=amd64
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

COPY --from=go /usr/local/go /usr/local/go
ENV PATH="/usr/local/go/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# TinyGo from its official release; binaryen comes inside the package.
# bubblewrap sandboxes every compile. Debian's bwrap is not setuid: as the image's
# non-root user it makes unprivileged user namespaces and a fresh /proc, which Docker's
# default seccomp profile and masked /proc refuse. Run the container that registers
# sources with --security-opt seccomp=unconfined --security-opt systempaths=unconfined
# (plus apparmor=unconfined on AppArmor hosts), or register from a host: workers only
# run modules and need neither bwrap nor toolchains.
ADD https://github.com/tinygo-org/tinygo/releases/download/v${TINYGO_VERSION}/tinygo_${TINYGO_VERSION}_${TARGETARCH}.deb /tmp/tinygo.deb
RUN apt-get update \
    && apt-get install -y --no-install-recommends /tmp/tinygo.deb bubblewrap ca-certificates \
        nodejs npm \
    && npm install --global --no-audit --no-fund "assemblyscript@${ASSEMBLYSCRIPT_VERSION}" \
    && npm cache clean --force \
    && rm -rf /var/lib/apt/lists/* /tmp/tinygo.deb \
    && tinygo version \
    && asc --version

COPY --from=build /wheels /wheels
RUN WHEEL="$(ls /wheels/wasmq-*.whl)" \
    && pip install --no-cache-dir "${WHEEL}[zig]" \
    && rm -rf /wheels

RUN useradd --create-home --uid 10001 wasmq
USER 10001
WORKDIR /home/wasmq
COPY --chown=wasmq:wasmq tasks ./tasks

ENV WASMQ_MODULE_DIR=/home/wasmq/wasm_task_functions \
    WASMQ_STATE_DIR=/home/wasmq/.wasmq

ENTRYPOINT ["wasmq"]
CMD ["--help"]
