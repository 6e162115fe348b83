# syntax=docker/dockerfile:1
# EdgeSight cloud image: `cloud-ops` (engineering and fleet consumers, warehouse init, connector tools, the Python
# connector runner). Build from the repository root:
#   docker build -f deploy/images/cloud.Dockerfile -t edgesight/cloud:0.1.0 .
# Stage 1 builds the virtual environment (pip, compilers' leftovers stay there); stage 2 is the runtime:
# the venv only, a non-root user, no shell tools beyond the slim base.

FROM python:3.12.8-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgesight/ edgesight/
COPY cloud/ cloud/
COPY connectors/ connectors/
COPY ops/ ops/
RUN python -m venv /opt/edgesight/venv \
 && /opt/edgesight/venv/bin/pip install '.[cloud]' \
 && /opt/edgesight/venv/bin/cloud-ops --help > /dev/null

FROM python:3.12.8-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="edgesight-cloud" \
      org.opencontainers.image.source="https://github.com/edgesight/edgesight" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 edgesight \
 && useradd --system --uid 10001 --gid 10001 --home-dir /opt/edgesight --shell /usr/sbin/nologin edgesight
COPY --from=build /opt/edgesight/venv /opt/edgesight/venv
ENV PATH=/opt/edgesight/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/edgesight
USER 10001:10001
# Config at /etc/edgesight/cloud.yaml (ConfigMap), secrets as EDGESIGHT_CLOUD__* environment variables.
ENTRYPOINT ["cloud-ops"]
CMD ["--help"]
