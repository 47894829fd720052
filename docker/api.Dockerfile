# The REST API and dashboard: slim Python, no CUDA. It only reads the database.
# Build from the repository root: docker build -f docker/api.Dockerfile .
FROM python:3.12-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The dependency set is pyproject's: nothing is pinned here, so the image cannot drift from it.
COPY pyproject.toml README.md ./
COPY tuner tuner
COPY workers workers
COPY api api
COPY db db
COPY kernel_templates kernel_templates
RUN pip install ".[postgres]" \
    && useradd --create-home --uid 10001 tuner

USER tuner
WORKDIR /home/tuner
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["tuner", "serve", "--host", "0.0.0.0", "--port", "8000"]
