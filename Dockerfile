# syntax=docker/dockerfile:1
# The trainlight dashboard: `trainlight serve` on the store in /data. No torch: trainings run
# elsewhere and reach it through a shared /data volume (their inbox) or HTTP ingest.
#
#   docker build -t trainlight .
#   docker run -p 8050:8050 -v trainlight-runs:/data -e TRAINLIGHT_TOKEN=<secret> trainlight
#
# Bound to 0.0.0.0, the server refuses to start without TRAINLIGHT_TOKEN; ingest, stop and the
# pages then need it (open the dashboard once as http://host:8050/?token=<secret>).

# -- build: the trainlight wheel and every dependency wheel, so the runtime stage needs no network
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app app
COPY collectors collectors
COPY demo demo
COPY integrations integrations
COPY assets assets
RUN pip wheel --wheel-dir /wheels .

# -- runtime: the dashboard only, as an unprivileged user
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 TRAINLIGHT_DIR=/data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels trainlight \
    && useradd --system --uid 10001 --create-home trainlight \
    && mkdir /data && chown trainlight:trainlight /data
USER trainlight
WORKDIR /home/trainlight
VOLUME /data
EXPOSE 8050
# /healthz answers without the token and carries no run data.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8050/healthz', timeout=4)"]
CMD ["trainlight", "serve", "--host", "0.0.0.0", "--port", "8050", "--dir", "/data"]
