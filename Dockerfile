# The guardrail sidecar on a CUDA host (CPU-only hosts run it too: device "auto" falls back to the CPU).
#
#   docker build -t guardrail .
#   docker run --gpus all -p 50051:50051 -p 9464:9464 guardrail
#
# Configuration is the sidecar's GUARDRAIL_* environment (see `guardrail serve --help`), e.g.
# -e GUARDRAIL_DEVICE=cpu, -e GUARDRAIL_MAX_BATCH_TEXTS=128, -e GUARDRAIL_AUTH_TOKEN=...
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin guardrail

# the venv and the code belong to root (read-only to the service); only the cache is the user's
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    GUARDRAIL_PROBES=/app/probes \
    GUARDRAIL_CACHE=/var/cache/guardrail \
    HF_HUB_OFFLINE=1
RUN python3 -m venv /opt/venv \
 && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY guardrail ./guardrail
RUN pip install .
COPY probes ./probes
COPY docker ./docker

RUN mkdir -p "$GUARDRAIL_CACHE" && chown guardrail:guardrail "$GUARDRAIL_CACHE"
USER guardrail
# bake the converted default model into the image: the container starts in seconds, offline
RUN sh docker/warm-cache.sh

# the container's own interfaces (published with -p); a bearer token over them needs TLS or
# GUARDRAIL_ALLOW_INSECURE=true (TLS ended before the container)
ENV GUARDRAIL_HOST=0.0.0.0 \
    GUARDRAIL_PORT=50051 \
    GUARDRAIL_METRICS_PORT=9464 \
    GUARDRAIL_METRICS_HOST=0.0.0.0 \
    GUARDRAIL_DEVICE=auto \
    GUARDRAIL_DRAIN_S=5
EXPOSE 50051 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "/app/docker/healthcheck.py"]
ENTRYPOINT ["guardrail", "serve"]
