# GPU worker and Ray head: the CUDA 13 toolchain (nvcc, NVRTC), CuPy, PyTorch and tuner.
# Build from the repository root: docker build -f docker/gpu.Dockerfile .
FROM nvidia/cuda:13.0.1-devel-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # PyTorch's CUDA 13 wheels; PyPI's default torch wheel is built for another CUDA.
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu130 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/cuda/bin:$PATH \
    TUNER_CACHE_DIR=/cache

# gcc builds the CPU backend's kernels too, so any node can also compile and run CPU studies.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV"

WORKDIR /src
# The dependency set is pyproject's: nothing is pinned here, so the image cannot drift from it.
COPY pyproject.toml README.md ./
COPY tuner tuner
COPY workers workers
COPY api api
COPY db db
COPY kernel_templates kernel_templates
RUN pip install ".[cuda,postgres]"

WORKDIR /work
CMD ["ray", "start", "--address=ray-head:6379", "--block"]
