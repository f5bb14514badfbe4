# syntax=docker/dockerfile:1
#
# Streaming ASR server image. One file, two variants, chosen with a build argument (BuildKit
# builds only the stages the chosen variant needs):
#
#   docker build -t streaming-asr:0.1.0-cpu .                          # CPU torch on Debian slim
#   docker build -t streaming-asr:0.1.0-gpu --build-arg VARIANT=gpu .  # CUDA PyTorch base image
#
# Stages: os-<variant> (base OS + tini) -> torch-<variant> (venv with torch) -> build (project
# and its dependencies into /opt/venv) -> runtime (os-<variant> + /opt/venv + bundled models).
# Details, and how to stop a container so that it drains: docs/deploy.md.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The GPU variant takes torch from this image and installs none: keep its torch version equal
# to the pin in pyproject.toml. CUDA 12.6 runs on drivers >= 560 (>= 525 with the forward
# compatibility of minor versions); pick another -cudaXX.Y- tag for other drivers.
ARG GPU_BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime

# --------------------------------------------------------------------------- base OS layers
FROM ${PYTHON_IMAGE} AS os-cpu
# tini from the distribution: PID 1 that forwards SIGTERM to the server and reaps zombies.
# Unpinned on purpose (DL3008): the distribution's security updates should flow in.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

FROM ${GPU_BASE_IMAGE} AS os-gpu
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# --------------------------------------------------------------------------- venv with torch
FROM os-cpu AS torch-cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

FROM os-gpu AS torch-gpu
# The base image carries a CUDA build of torch; the venv sees it through the system site
# packages, so nothing is installed here.
RUN python -m venv --system-site-packages /opt/venv \
 && /opt/venv/bin/python -c "import torch; assert torch.version.cuda, 'base image torch lacks CUDA'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

# --------------------------------------------------------------------------- build
# hadolint ignore=DL3006
FROM torch-${VARIANT} AS build
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first (torch left out: it is already there), so that this layer stays cached
# while only the source changes.
COPY pyproject.toml README.md ./
COPY client/pyproject.toml client/pyproject.toml
COPY deploy/docker/requirements.py deploy/docker/requirements.py
RUN python deploy/docker/requirements.py pyproject.toml client/pyproject.toml --exclude torch \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt
COPY proto/ proto/
COPY client/ client/
COPY server/ server/
COPY training/ training/
# Smoke test: --help imports the whole server (and the client CLI) from the installed packages.
RUN pip install --no-cache-dir --no-deps ./client . \
 && python -I -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)" \
 && asr-server --help > /dev/null \
 && asr --help > /dev/null

# --------------------------------------------------------------------------- runtime
# hadolint ignore=DL3006
FROM os-${VARIANT} AS runtime
ARG VARIANT
ARG UID=10001
LABEL org.opencontainers.image.title="streaming-asr" \
      org.opencontainers.image.description="Streaming speech recognition gRPC service (${VARIANT})"
RUN groupadd --system --gid "${UID}" asr \
 && useradd --system --uid "${UID}" --gid asr --home-dir /home/asr --create-home --shell /usr/sbin/nologin asr
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ASR_MODELS_DIR=/opt/asr/models
COPY --from=build /opt/venv /opt/venv
# The bundled models (one folder each: model.safetensors, config.json, tokenizer files),
# owned by root and read-only for the server.
COPY models/ /opt/asr/models/
COPY deploy/docker/healthcheck.py /opt/asr/healthcheck.py
WORKDIR /opt/asr
# The copied venv works in this stage (the server and the probe import), and there is a model.
RUN asr-server --help > /dev/null \
 && python /opt/asr/healthcheck.py --help > /dev/null \
 && python -c "import pathlib, sys; found = sorted(p.parent.name for p in pathlib.Path('/opt/asr/models').glob('*/config.json')); print('bundled models:', found); sys.exit(not found)"
USER ${UID}:${UID}
# gRPC (ASR_PORT) and Prometheus /metrics (ASR_METRICS_PORT)
EXPOSE 50051 9400
# The gRPC health service turns SERVING once the models are loaded and warmed up, and
# NOT_SERVING as soon as the server starts draining on SIGTERM.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/asr/healthcheck.py", "--quiet"]
# Exec form: tini is PID 1 and forwards SIGTERM to asr-server, which drains and exits.
# Arguments after the image name are server flags: docker run IMAGE --max-streams 64
ENTRYPOINT ["/usr/bin/tini", "--", "asr-server"]
CMD []
