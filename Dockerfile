# sticky-proxy and the demo backend in one image:
#   docker build -t sticky-proxy:dev .          (or `minikube image build -t sticky-proxy:dev .`)
#   docker run -p 8080:8080 -p 10254:10254 sticky-proxy:dev serve --backend http://HOST:PORT
#   docker run --entrypoint sticky-backend -p 8080:8080 \
#       -e HEALTHCHECK_URL=http://127.0.0.1:8080/healthz sticky-proxy:dev
# It runs as well with `docker run --read-only` and no --tmpfs: one proxy process writes no file
# (TLS certificates load through memory), and --workers N keeps the files its processes share in
# /dev/shm, which Docker mounts writable (64 MB unless --shm-size), or in --state-dir PATH.
# The build stage's RUN lines are run as written, in a fresh venv, by tests/e2e/test_image_steps.py.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The build stage compiles the per-request code with mypyc (setup.py): the full image has the C
# compiler the slim one lacks (same Debian, same Python), and none of it reaches the final stage.
ARG BUILD_IMAGE=python:3.11-bookworm

FROM ${BUILD_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    WHEELS=/wheels \
    VENV=/opt/sticky-proxy
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY proxy/ proxy/
COPY backend/ backend/
# Every dependency comes as a wheel (uvloop, httptools, aiohttp publish manylinux ones); the
# project's own wheel is compiled (setup.py); --no-index then proves the directory holds all.
RUN pip wheel --wheel-dir "$WHEELS" .
# A venv without pip: the runtime stage copies it whole, and nothing in it can install more.
RUN python -m venv --without-pip "$VENV" \
    && pip --python "$VENV/bin/python" install --no-index --find-links "$WHEELS" "$WHEELS"/sticky_proxy-*.whl

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sticky-proxy" \
      org.opencontainers.image.description="Cookie-based sticky sessions for Kubernetes workloads, the way ingress-nginx does them, in pure Python; with the demo backend (sticky-backend)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# A fixed numeric uid: Kubernetes can check runAsNonRoot only against a number.
RUN groupadd --system --gid 10001 sticky \
    && useradd --system --no-log-init --uid 10001 --gid sticky --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sticky
COPY --from=build /opt/sticky-proxy /opt/sticky-proxy
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the cluster, and the wheel's
# install already compiled everything.
ENV PATH=/opt/sticky-proxy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:10254/healthz
USER 10001:10001
# proxy (HTTP), proxy (HTTPS, --tls-*), metrics and health; sticky-backend listens on 8080.
EXPOSE 8080 8443 10254
# The proxy's /healthz on its metrics port. Running sticky-backend instead, set
# HEALTHCHECK_URL=http://127.0.0.1:8080/healthz. (Kubernetes ignores this: it has its probes.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=3)"]
ENTRYPOINT ["sticky-proxy"]
CMD ["--help"]
