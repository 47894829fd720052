"""What the runtime's CPU tests share: PyTorch (or the reason it is missing), databases of the
attention and softmax templates filled through the real Store, and an exact reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI


def import_torch() -> Any:
    """torch; outside CI a missing torch skips the module with the reason, in CI it fails."""
    try:
        import torch
    except ImportError:
        if IN_CI:
            pytest.fail("CI must provide PyTorch: the dev extra pins its CPU build", pytrace=False)
        pytest.skip("PyTorch is not installed: `pip install -e '.[dev]'` brings its CPU build",
                    allow_module_level=True)
    return torch


torch = import_torch()

from tests.api.conftest import BASE_CONFIG, new_study, record  # noqa: E402
from tests.db_fixtures import measurement  # noqa: E402
from tuner.db import Store  # noqa: E402
from tuner.enums import Status  # noqa: E402
from tuner.kernel_templates import load_spec_file  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SOFTMAX = str(REPO / "examples" / "softmax_spec.py")
# A small attention problem (the CPU template, float32) and the trials stored for it: the
# fastest ok config is poly3 (1e-4 error); within 1e-5 only libm; within 1e-7 none.
SMALL = {"B": 1, "H": 2, "S": 64, "D": 32, "causal": True}
FAST_CONFIG = {**BASE_CONFIG, "exp": "poly3"}
EXACT_CONFIG = dict(BASE_CONFIG)


def fill_attention(store: Store) -> None:
    study = new_study(store, "small", SMALL)
    record(store, study, 0, {}, Status.OK, 2e-3, 1e-6, SMALL)
    record(store, study, 1, {"exp": "poly3"}, Status.OK, 1e-3, 1e-4, SMALL)
    record(store, study, 2, {"exp": "poly2"}, Status.WRONG_RESULT, 5e-4, 0.5, SMALL)


def fill_softmax(store: Store, problem: dict[str, Any]) -> None:
    spec = load_spec_file(SOFTMAX)
    study = store.ensure_study(name="softmax", kernel=spec.name, backend="cpu", template_path=SOFTMAX,
                               problem=problem, arch="cpu", device_name="test cpu", sampler="tpe",
                               directions=["minimize", "minimize"])
    config = {"unroll": 4, "threads": 1, "fast_math": False}
    source = spec.render(config, problem)
    store.record_trial(study, 0, config, measurement(median_s=1e-4, rel_l2=1e-7,
                                                     source_hash=source.digest()), source.code)


def reference(q: Any, k: Any, v: Any, causal: bool) -> Any:
    """float64 attention of the same inputs."""
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)


def rel_l2(out: Any, ref: Any) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def qkv(problem: dict[str, Any], seed: int = 0) -> tuple[Any, Any, Any]:
    generator = torch.Generator().manual_seed(seed)
    shape = (problem["B"], problem["H"], problem["S"], problem["D"])
    return tuple(torch.randn(shape, generator=generator) for _ in range(3))
