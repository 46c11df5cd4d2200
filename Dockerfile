# syntax=docker/dockerfile:1.7
#
# Two images from one file:
#   docker build --target cpu -t ldensf:cpu .      # default: python slim, CPU torch + onnxruntime
#   docker build --target gpu -t ldensf:gpu .      # CUDA 12 runtime + cuDNN 9, CUDA torch, onnxruntime-gpu
# Both run `ldensf serve` as an unprivileged user on port 8000 with the shipped bundles baked in
# at /app/models/bundles; mount another directory there (or set LDENSF_MODEL_DIR) to serve others.

ARG PYTHON_VERSION=3.11
ARG TORCH_VERSION=2.13.0
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---- the package's sources, shared by both builds ---------------------------------------------
FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY ldensf /src/ldensf
COPY sim /src/sim
COPY filters /src/filters
COPY models /src/models
COPY training /src/training
COPY service /src/service

# ---- CPU: build a virtualenv with the CPU torch wheel and the package ----------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS cpu-build
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
COPY --from=source /src /src
WORKDIR /src
RUN pip install .

# ---- CPU runtime ----------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS cpu
RUN useradd --create-home --uid 10001 --user-group ldensf
COPY --from=cpu-build /opt/venv /opt/venv
COPY --chown=ldensf:ldensf models/bundles /app/models/bundles
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LDENSF_MODEL_DIR=/app/models/bundles \
    LDENSF_DEVICE=cpu \
    OMP_NUM_THREADS=1
WORKDIR /app
USER ldensf
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["ldensf", "serve", "--host", "0.0.0.0", "--port", "8000"]

# ---- GPU: CUDA runtime base, CUDA torch, onnxruntime-gpu ------------------------------------
FROM ${CUDA_IMAGE} AS gpu-build
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cu126
COPY --from=source /src /src
WORKDIR /src
# onnxruntime and onnxruntime-gpu install the same module: keep only the GPU build
RUN pip install ".[gpu]" && pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps "onnxruntime-gpu>=1.17"

FROM ${CUDA_IMAGE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group ldensf
COPY --from=gpu-build /opt/venv /opt/venv
COPY --chown=ldensf:ldensf models/bundles /app/models/bundles
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LDENSF_MODEL_DIR=/app/models/bundles \
    LDENSF_DEVICE=auto
WORKDIR /app
USER ldensf
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["ldensf", "serve", "--host", "0.0.0.0", "--port", "8000"]

# `docker build .` without --target gives the CPU image
FROM cpu
