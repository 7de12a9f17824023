# syntax=docker/dockerfile:1
# The jes image: `jes serve` in the chart's Deployment, `jes copy-files` in every Job's init
# container, `jes check` in the helm test pod. Runs as a non-root user on a read-only root
# filesystem (only /tmp is written, an emptyDir in the chart).
#
#   docker build -t ghcr.io/jes-project/jes:0.1.0 .
#
# Dependencies come from requirements.lock (exact versions with hashes; `sh scripts/lock.sh`
# regenerates it with the same Python version as below).

# Base image: python:3.11.14-slim-trixie in both stages (keep them equal; 3.11 is the Python the
# lock is resolved with).

# ---- build: a virtualenv with the locked dependencies and jes itself --------------------------
FROM python:3.11.14-slim-trixie AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python -m venv /opt/jes
COPY requirements.lock ./
RUN /opt/jes/bin/python -m pip install --require-hashes --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY jes ./jes
RUN /opt/jes/bin/python -m pip install --no-deps . \
 && /opt/jes/bin/python -m pip check \
 && /opt/jes/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/jes/bin/jes --version

# ---- runtime: the virtualenv on a clean base, no pip, no build tools -----------------------------
FROM python:3.11.14-slim-trixie
ARG JES_UID=10001
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel 2>/dev/null || true; \
    groupadd --system --gid "${JES_UID}" jes \
 && useradd --system --uid "${JES_UID}" --gid "${JES_UID}" --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin jes
COPY --from=build /opt/jes /opt/jes
ENV PATH=/opt/jes/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="jes" \
      org.opencontainers.image.description="Keptn job executor service: runs container tasks for Keptn events as Kubernetes Jobs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
WORKDIR /tmp
USER ${JES_UID}:${JES_UID}
EXPOSE 8080
# for `docker run ... serve`; Kubernetes uses the chart's probes instead
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=3)"]
ENTRYPOINT ["jes"]
CMD ["serve"]
