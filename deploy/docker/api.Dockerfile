# dockyard-api. Build from the repository root:
#   docker build -f deploy/docker/api.Dockerfile .
# The four service Dockerfiles differ only in the service name.

FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv
# Non-editable install: the workspace packages land in the venv, so the venv alone is the app.
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs/ libs/
COPY services/ services/
RUN uv sync --frozen --no-dev --no-editable --package dockyard-api

FROM python:3.11-slim
RUN groupadd --system --gid 10001 dockyard \
    && useradd --system --uid 10001 --gid dockyard --no-create-home --home-dir /app dockyard \
    && install -d -o dockyard -g dockyard /data
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DOCKYARD_DATA_DIR=/data
USER dockyard
WORKDIR /app
CMD ["/app/.venv/bin/python", "-m", "dockyard_api"]
