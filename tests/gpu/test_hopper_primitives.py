"""The Hopper header's device primitives on a real GPU, each alone in a small kernel."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tuner.kernel_templates import Target
from tuner.kernel_templates.headers import inline_headers
from tuner.kernel_templates.spec import Source
from tuner.workers import get_backend
from tuner.workers.cuda_launch import launcher
from tuner.workers.cuda_runtime import gpu_count

pytestmark = pytest.mark.gpu

TARGET = Target.documented("sm_90a")
BACKEND = get_backend("cuda")


@pytest.fixture(scope="module", autouse=True)
def _gpu() -> None:
    require(gpu_count() > 0, "no CUDA GPU here: run bench/device_round.sh on a GPU machine")


EXP2_POLY = '''#include "hopper.cuh"
extern "C" __global__ void exp2_poly_of(const float *x, float *y, long long n) {
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = hopper::exp2_poly(x[i]);
}
'''


def exp2_poly_source(n: int) -> Source:
    """hopper::exp2_poly over n floats (poly_exp2's share of the softmax), alone in a kernel."""
    return Source(language="cuda", code=inline_headers(EXP2_POLY), entry="exp2_poly_of", scalars=(("int64", n),),
                  grid=(-(-n // 256), 1, 1), block=(256, 1, 1))


def test_the_polynomial_exp2_is_exp2_within_its_bound_and_zero_below_probabilities() -> None:
    """Relative error <= 7.5e-5 (the fit's) over the softmax's range; below -125 (-inf included, as
    a masked score becomes) a positive value under 2.4e-38 (no 16-bit or e4m3 probability holds it)."""
    import torch

    x = torch.cat([-torch.linspace(0, 125, 1 << 20, device="cuda"), torch.tensor(
        [-125.4, -126.0, -200.0, -float("inf"), -1e-7, 0.0], device="cuda")])
    source = exp2_poly_source(x.numel())
    artifact = BACKEND.compile(source, TARGET)
    assert artifact.error is None, artifact.log
    y = torch.empty_like(x)
    launcher(artifact.path, source, {"x": x}, y)()
    torch.cuda.synchronize()
    exact = torch.exp2(x.double())
    normal = x >= -125
    assert float(((y.double() - exact).abs() / exact)[normal].max()) <= 7.6e-5
    assert bool((y[~normal] > 0).all()) and float(y[~normal].max()) < 2.4e-38
