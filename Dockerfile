# The governance service, its training worker and its scheduler: one image, three commands.
#
#   docker build -t governance .
#   docker compose up            # PostgreSQL, Redis, the service, a worker and the scheduler
#
# Everything installs at build time from the lock file (hashes checked); nothing downloads at
# run time. PyTorch is the CPU build here; a GPU worker image installs the CUDA build instead
# (see the README's "On a GPU host").
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GOVERNANCE_HOME=/var/lib/governance

WORKDIR /srv/governance

# PyTorch first and by exact version, from the CPU wheel index, then the locked dependencies.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY requirements.lock ./
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements.lock

COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY audit ./audit
COPY benchmarks ./benchmarks
COPY governance ./governance
COPY policies ./policies
COPY trainers ./trainers
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e .
# The scanner's name lexicon, derived from names-dataset once, at build time, readable by all.
ENV GOVERNANCE_PII_CACHE=/srv/governance/cache
RUN python -m governance.pii.names && chmod -R a+rX /srv/governance/cache

# A user of its own; the instance directory (keys, blobs) is a volume only it can read.
RUN useradd --system --home-dir /var/lib/governance --create-home governance \
    && chmod 700 /var/lib/governance
USER governance
VOLUME ["/var/lib/governance"]
EXPOSE 8000

ENTRYPOINT ["govern"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
