# analyze-failures as a batch-job image.
#   docker build -t biomlbench-failure-analysis .
#   docker run --rm -v "$PWD/output:/data" -e BUCKET_PATH=s3://bucket/prefix/ biomlbench-failure-analysis
# Configuration is environment only (see entrypoint.sh and docs/container.md).
# No `# syntax=` line: BuildKit would pull a frontend image (docker/dockerfile) for
# it, so a build without registry access could not start. BuildKit's built-in
# frontend and podman/buildah understand everything used here.

# One pin for both stages: the venv built below links to this interpreter, so the
# final stage must have the very same Python. Pinned to a patch release; bump it
# on purpose (a digest pin would be stronger but cannot be resolved offline).
ARG PYTHON_IMAGE=python:3.11.18-slim-bookworm

# --- builder: the locked runtime dependencies and the package, in a venv -------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The locks first, alone: the dependency layer is rebuilt only when a lock changes.
# Every wheel is checked against its hash; --no-deps so nothing unlocked sneaks in.
# build.lock is the package's build backend (setuptools), pinned and hashed too:
# the package is then built without build isolation, which would otherwise fetch
# whatever setuptools is newest, unpinned and unchecked.
COPY requirements/runtime.lock requirements/build.lock requirements/
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements/runtime.lock \
        -r requirements/build.lock

# README.md is read by the build backend (pyproject's `readme`).
COPY pyproject.toml README.md ./
COPY job ./job
# Not editable: the final stage gets no source tree, only what is installed.
# pip itself then leaves the venv: the image needs no installer at run time.
# Bytecode is compiled here, once: with PYTHONDONTWRITEBYTECODE every start would
# otherwise recompile the job and its dependencies (~0.5 s of a ~1 s run, see
# docs/PERFORMANCE.md); hash-checked .pyc files stay valid whatever COPY does to mtimes.
RUN pip install --no-cache-dir --no-build-isolation --no-deps . \
    && pip uninstall --yes pip setuptools \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# --- final: interpreter + venv + entrypoint, nothing else -----------------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="biomlbench-failure-analysis" \
      org.opencontainers.image.description="Batch job: fetch failed biomlbench run groups from S3, extract them safely and report why the agents failed." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT"

# tini as PID 1: the parse stage forks worker processes, and PID 1 must reap any
# that are orphaned (or zombies pile up) and pass SIGTERM/SIGINT on. Debian's
# package, pinned; the apt lists are removed in the same layer. -s (subreaper)
# keeps it correct under an outer init too (compose's `init: true`, `docker run --init`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid (not just a name): Kubernetes' runAsNonRoot can only verify a
# numeric USER, and host folders can be chown'ed to it ahead of time.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --home-dir /home/app --create-home \
       --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0755 /data

COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 entrypoint.sh /usr/local/bin/entrypoint.sh

# PYTHONDONTWRITEBYTECODE: the venv is precompiled and the root filesystem may be
# read-only (Kubernetes). PYTHONUNBUFFERED: log lines reach `docker logs` at once.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/app \
    OUTPUT_DIR=/data

# /data is created above owned by 10001, so a fresh named volume inherits that owner.
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001

# A batch job has no "healthy" state to probe: it runs, then exits with its status
# (0 ok, 1 some items failed, 2 configuration error, 143 stopped). The orchestrator
# watches the exit code and the deadline instead.
HEALTHCHECK NONE

# Exec form. tini is PID 1: it forwards SIGTERM/SIGINT to its one child, reaps
# every orphan, and exits with the child's status. The entrypoint execs the job,
# so analyze-failures is that child: it gets the signal, stops cleanly and exits
# 143 (130 for SIGINT), which tini returns as its own. No arguments = `run`.
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/local/bin/entrypoint.sh"]
