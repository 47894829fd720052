# Sourced at the start of every run on the GPU machine (from the repository root). Its image has
# torch, CuPy and Triton but not the project's other dependencies and no network: those travel as
# wheels (../shared/tools/device-wheels; carry .devwheels in the call). The project is installed
# editable without touching the network; where that fails, an equivalent tree of links stands in
# for pyproject's package-dir mapping (then run Python with -P so the repository's plain tuner/
# folder cannot shadow it).
export PYTHONUNBUFFERED=1 TUNER_CACHE_DIR="${TUNER_CACHE_DIR:-/tmp/tuner-cache}"
if [[ -f .devwheels/activate ]]; then source .devwheels/activate; fi
_importable() { python3 -P -c "import tuner.workers.cuda" 2>/dev/null; }
if ! _importable; then
  python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/tmp/tuner-install.log 2>&1
fi
if ! _importable; then
  _ns="$(mktemp -d)"; mkdir "$_ns/tuner"
  ln -s "$PWD"/tuner/* "$_ns/tuner/"
  for _pkg in workers api db kernel_templates; do ln -s "$PWD/$_pkg" "$_ns/tuner/$_pkg"; done
  export PYTHONPATH="$_ns:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 -P -c "import tuner.workers.cuda, tuner.db" || { cat /tmp/tuner-install.log >&2; exit 1; }

device_header() {  # the machine, for every results file
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv
  nvcc --version | tail -1
  python3 -c "import sys, torch, cupy, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cupy', cupy.__version__, 'triton', triton.__version__)"
}
