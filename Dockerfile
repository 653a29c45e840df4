# syntax=docker/dockerfile:1
#
# Graph security alert receiver: one image for every role.
#
#   docker build -t graph-alert-receiver .
#   docker run -v ./receiver.yaml:/etc/receiver/receiver.yaml:ro -p 8080:8080 \
#       graph-alert-receiver                      # all roles in one process (receiver serve)
#   docker run ... graph-alert-receiver web       # or one role: web | worker | scheduler
#
# Settings come from a mounted file (RECEIVER_CONFIG) and the environment
# (RECEIVER_<SECTION>__<KEY>, REDIS_URL); secrets from mounted files (*_file keys) or named
# variables (*_env keys). Nothing secret is baked into the image.
#
# Every dependency ships binary wheels for CPython 3.11 on linux/amd64 and linux/arm64, so the
# build stage needs no compilers. tests/test_deploy.py replays the RUN lines that contain
# `pip wheel` / `pip install`: keep each one a single plain command.

ARG PYTHON_IMAGE=python:3.11-slim

# --- stage 1: wheels of the project and all its dependencies --------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY receiver ./receiver
RUN pip wheel --no-deps -w /wheels .
RUN pip wheel -w /wheels .

# --- stage 2: runtime, installed only from /wheels -------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECEIVER_CONFIG=/etc/receiver/receiver.yaml \
    RECEIVER_WEB__HOST=0.0.0.0
RUN groupadd --system --gid 10001 receiver && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin receiver
# The wheels are bind-mounted from the build stage, so they never become a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels pip install --no-index --find-links=/wheels graph-alert-receiver
# /etc/receiver: the settings (mounted read-only). /var/lib/receiver: the only writable place
# (a new named volume mounted here takes this owner: the simulator's CA, a jsonl archive).
RUN mkdir -p /etc/receiver /var/lib/receiver && chown 10001:10001 /var/lib/receiver
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# Checks the web role's /healthz on the default port. worker and scheduler serve no HTTP: turn
# the check off for them (docker-compose: healthcheck: disable: true).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["receiver"]
CMD ["serve"]
