# syntax=docker/dockerfile:1
# The studio's front end, built from its lockfile; only the built files reach the image.
FROM node:22-slim AS studio
WORKDIR /studio
COPY studio/package.json studio/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY studio/index.html studio/vite.config.js ./
COPY studio/src src
RUN npm run build

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
# SERVER_HOST=0.0.0.0: inside a container the server must listen beyond loopback.
ENV PYTHONUNBUFFERED=1 \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8000 \
    SERVER_DATA_DIR=/data \
    SERVER_LOG_JSON=true \
    SERVER_STUDIO_DIR=/srv/studio
COPY --from=build /install /usr/local
COPY --from=studio /studio/dist /srv/studio
# `bpmn-collab migrate` reads the SQL migrations as package data: fail the build, not the
# first start, if they did not make it into the install.
RUN python -c "from persistence.migrator import load_migrations as m; import sys; sys.exit(0 if m('postgres') and m('sqlite') else 'migrations missing')" \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /data --create-home app
# Numeric, so orchestrators can tell it is not root without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SERVER_PORT', '8000'), timeout=2)"]
CMD ["bpmn-collab", "serve"]
