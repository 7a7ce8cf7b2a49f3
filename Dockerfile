# syntax=docker/dockerfile:1
#
# Lethe images. Two targets share one base:
#
#   docker build --target api    -t lethe-api .     # API, beat, CPU worker: no torch, no CUDA
#   docker build --target worker -t lethe-worker .  # GPU worker: pinned torch with CUDA
#
# The torch pins are the Makefile's (TORCH_VERSION, TORCHVISION_VERSION): torch==2.14.1 with
# torchvision==0.29.1, which requires exactly that torch. The worker target
# installs it from PyTorch's CUDA wheel index; those wheels carry the CUDA runtime libraries,
# so the image needs no CUDA base image, only the NVIDIA driver on the host (NVIDIA
# Container Toolkit). Override with --build-arg TORCH_VERSION=... / TORCH_INDEX_URL=...
# (e.g. https://download.pytorch.org/whl/cpu for a CPU-only worker image).
#
# No secret is baked in: every LETHE_* setting that is a credential comes from the
# environment at run time (see docker-compose.yml and docs/DEPLOYMENT.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- base: the project's base dependencies (what `pip install .` pulls, minus the code) ---
FROM ${PYTHON_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    LETHE_DATA_DIR=/var/lib/lethe

RUN groupadd --system --gid 10001 lethe \
    && useradd --system --uid 10001 --gid lethe --create-home --home-dir /home/lethe \
        --shell /usr/sbin/nologin lethe \
    && python -m venv /opt/venv \
    && mkdir -p /var/lib/lethe \
    && chown lethe:lethe /var/lib/lethe

# Dependencies first (a layer that survives code changes), read from pyproject.toml.
COPY pyproject.toml /tmp/lethe/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/lethe/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/lethe/requirements.txt \
    && pip install -r /tmp/lethe/requirements.txt

# --- source: the project itself, built once as a wheel (no dependencies) -------------------
FROM base AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY lethe ./lethe
COPY benchmarks ./benchmarks
COPY unlearning ./unlearning
COPY models_store ./models_store
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- api: FastAPI + Celery dispatcher; also runs `lethe beat` and `lethe worker -Q default` --
FROM base AS api
COPY --from=source /wheels /wheels
# The base dependencies are already installed; the worker extra (torch) is NOT.
RUN pip install --no-deps /wheels/*.whl && rm -rf /wheels /tmp/lethe
WORKDIR /var/lib/lethe
USER lethe
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LETHE_PORT', '8000'), timeout=4)"]
CMD ["lethe", "serve", "--host", "0.0.0.0"]

# --- worker: GPU node, one Celery process per GPU -----------------------------------------
FROM base AS worker
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# torch first, pinned, from the CUDA index, so pip never resolves another build; then the
# worker extra under the same pin as a constraint.
RUN pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
        --index-url "${TORCH_INDEX_URL}" \
    && printf 'torch==%s\ntorchvision==%s\n' "${TORCH_VERSION}" "${TORCHVISION_VERSION}" \
        > /tmp/lethe/constraints.txt
COPY --from=source /wheels /wheels
RUN wheel="$(ls /wheels/*.whl)" \
    && pip install -c /tmp/lethe/constraints.txt "${wheel}[worker]" \
    && rm -rf /wheels /tmp/lethe
WORKDIR /var/lib/lethe
USER lethe
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "celery -A workers.celery_app inspect ping -d \"celery@${HOSTNAME}\" --timeout 10 >/dev/null"]
CMD ["lethe", "worker", "-Q", "gpu", "-c", "1"]
