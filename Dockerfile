# PLENA emulator HTTP service.
#   docker build -t plena-emulator-api .
#   docker run -p 8000:8000 -v plena-data:/data plena-emulator-api
# Configuration: PLENA_API_* environment variables (api/config.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/opt/plena/numba-cache

WORKDIR /opt/plena/src
# README.m[d]: the readme is optional for the build (the glob may match nothing).
COPY pyproject.toml requirements.lock README.m[d] ./
COPY isa_specs ./isa_specs
COPY emulator ./emulator
COPY profiler ./profiler
COPY api ./api
COPY batch ./batch
COPY debugger ./debugger
# The shipped examples the dashboard's "new run" page offers (PLENA_API_EXAMPLES_DIR).
COPY examples ./examples

# The locked, hash-checked dependency set (the README's install), then the package itself;
# psycopg: the PostgreSQL driver for PLENA_API_DATABASE_URL=postgresql+psycopg://...
RUN pip install --require-hashes --no-deps -r requirements.lock \
    && pip install --no-deps . \
    && pip install "psycopg[binary]>=3.1" \
    && pip check

# Compile the numba kernels into the image (the same warm-up every worker runs at start-up), so
# that containers start in seconds; a run user owns the cache in case the CPU differs.
RUN useradd --system --uid 10001 --home-dir /data plena \
    && mkdir -p /data "$NUMBA_CACHE_DIR" \
    && python -c "import sys; from api.worker import warm_up; problem = warm_up(); print(problem or 'warm-up ok'); sys.exit(1 if problem else 0)" \
    && chown -R plena /data "$NUMBA_CACHE_DIR"

USER plena
WORKDIR /data
ENV PLENA_API_DATABASE_URL=sqlite:////data/plena_runs.db \
    PLENA_API_EXAMPLES_DIR=/opt/plena/src/examples \
    PLENA_API_DATA_DIR=/data/blobs \
    PLENA_API_HOST=0.0.0.0 \
    PLENA_API_PORT=8000
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["plena-serve"]
