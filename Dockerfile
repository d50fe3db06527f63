# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY server server
COPY rooms rooms
COPY persistence persistence
COPY bpmn bpmn
COPY bench bench
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8000 \
    SERVER_DATA_DIR=/data \
    SERVER_LOG_JSON=true
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /data --create-home app
USER app
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["bpmn-collab", "serve"]
