# finrelease worker and CLI image: `finrelease worker {workflows|db|k8s|azure|smoke}`.
#
# The base is pinned by tag (the pipeline deploys this image by digest). pg_dump must be at
# least as new as the database server it dumps, so the client comes from the PostgreSQL
# project's own apt repository (PGDG) in the major version set by PG_MAJOR, not from Debian's.
FROM python:3.11.11-slim-bookworm

ARG PG_MAJOR=17

# The root filesystem is read-only in Kubernetes: anything that wants a home writes to /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates postgresql-common; \
    /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}"; \
    rm -rf /var/lib/apt/lists/*; \
    pg_dump --version

WORKDIR /app
# Dependencies change less often than code: metadata first keeps the layer cache useful.
COPY pyproject.toml README.md ./
COPY governance/ governance/
COPY workflows/ workflows/
COPY activities/ activities/
COPY workers/ workers/
COPY starter/ starter/
COPY devstack/ devstack/
# Bytecode is compiled here because nothing can write it later (PYTHONDONTWRITEBYTECODE, read-only
# root filesystem), and the workflow sandbox re-imports the workflow modules for every run.
RUN pip install . \
    && python -m compileall -q "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && finrelease --help >/dev/null

# A fixed numeric uid lets Kubernetes verify runAsNonRoot without resolving the name.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin finrelease
USER 10001:10001

# FINRELEASE_HEALTH_PORT serves /healthz and /readyz; FINRELEASE_METRICS_PORT serves Prometheus.
ENV FINRELEASE_HEALTH_PORT=8081 \
    FINRELEASE_METRICS_PORT=9464
EXPOSE 8081 9464

ENTRYPOINT ["finrelease"]
CMD ["--help"]
