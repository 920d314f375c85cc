# syntax=docker/dockerfile:1
# The Future Skills model service. One image runs every role of the stack: the HTTP service
# (`serve`, the default), the one-shot `bootstrap` / `db upgrade` step and the MLflow server
# (`mlflow server ...`, the `server` extra brings the Postgres driver and boto3 for S3).

ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies in their own layer, pinned (scripts/lock_image_requirements.sh writes the lock):
# rebuilt only when the lock changes, not on every code edit.
COPY requirements.lock ./
RUN pip install --requirement requirements.lock
# The code. Editable, so alembic.ini and alembic/ stay next to the package (the migration
# runner finds them relative to it).
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY app ./app
RUN pip install --no-deps --editable . && python -m compileall -q app

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /var/lib/future-skills \
    && chown app:app /var/lib/future-skills
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    FS_ENVIRONMENT=production \
    FS_DATA_DIR=/var/lib/future-skills \
    FS_HOST=0.0.0.0 \
    FS_PORT=8000 \
    FS_LOG_JSON=true \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc
USER 10001:10001
EXPOSE 8000
VOLUME ["/var/lib/future-skills"]
# `serve` empties PROMETHEUS_MULTIPROC_DIR at start, so a restarted container never adds the
# previous run's counts. The check needs no curl: the image's Python asks /health/live.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('FS_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["future-skills"]
CMD ["serve"]
