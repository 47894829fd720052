"""The FP8 attention pre-pass (attention_problem.fp8_inputs), on the CPU: e4m3 copies with one
scale each, V transposed and zero-padded to 32 keys with each 32 keys in the order the kernel's
P fragments read them, so that P·V over the permuted keys is P·V."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tuner.kernel_templates import find_spec  # noqa: E402
from tuner.kernel_templates.attention_problem import V_KEY_ORDER, fp8_inputs  # noqa: E402
from tuner.kernel_templates.e4m3 import E4M3_MAX  # noqa: E402


def accumulator_keys(lane: int) -> list[int]:
    """The keys of one 32-key step whose fp32 scores a thread holds, in the order it packs them
    (attention_hopper.cu's to_operand): of each 8-key group, keys 2q and 2q + 1 (q = lane % 4),
    for rows r and r + 8, groups 0 and 1 into its first two registers, groups 2 and 3 into the last."""
    q = lane % 4
    return [8 * group + 2 * q + e for half in (0, 1) for group in (2 * half, 2 * half + 1) for e in (0, 1)]


def fragment_positions(lane: int) -> list[int]:
    """The K positions of the m64k32 e4m3 A fragment a thread holds, in register and byte order:
    4q..4q+3, then 16 + 4q..16 + 4q + 3 (the rows r + 8 registers hold the same positions)."""
    q = lane % 4
    return [16 * half + 4 * q + byte for half in (0, 1) for byte in range(4)]


def test_the_key_order_is_where_the_accumulators_land_in_the_fragment():
    for lane in range(4):
        assert [V_KEY_ORDER[p] for p in fragment_positions(lane)] == accumulator_keys(lane)
    assert sorted(V_KEY_ORDER) == list(range(32))


def test_fp8_inputs_quantize_transpose_and_permute():
    generator = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(shape, generator=generator).to(torch.float16)
               for shape in ((2, 4, 77, 64), (2, 2, 77, 64), (2, 2, 77, 64)))
    made = fp8_inputs(q, k, v)
    assert set(made) == {"q8", "k8", "vt8", "scales"}
    assert made["q8"].dtype == made["vt8"].dtype == torch.float8_e4m3fn and made["scales"].dtype == torch.float32
    assert made["q8"].shape == q.shape and made["vt8"].shape == (2, 2, 64, 96)  # 77 keys padded to 96
    assert made["vt8"].is_contiguous()
    scales = made["scales"]
    for name, x, scale in (("q8", q, scales[0]), ("k8", k, scales[1])):
        assert torch.isclose(scale, x.abs().amax().float() / E4M3_MAX)
        assert (made[name].float() * scale - x.float()).norm() / x.float().norm() < 0.05
    # un-permute and un-transpose V: the keys back in order, the padding zero
    order = torch.tensor(V_KEY_ORDER)
    inverse = torch.argsort(order)
    vt = made["vt8"].float() * scales[2]
    keys = vt.transpose(2, 3).reshape(2, 2, 3, 32, 64)[:, :, :, inverse].reshape(2, 2, 96, 64)
    assert (keys[:, :, 77:] == 0).all()
    assert (keys[:, :, :77] - v.float()).norm() / v.float().norm() < 0.05
    # what the kernel computes for a 32-key step: the fragment's position L times transposed V's column L
    p = torch.rand(64, 96)
    fragment = p.view(64, 3, 32)[:, :, order].reshape(64, 96)  # position L of each step holds key order[L]
    assert torch.allclose(fragment @ vt[0, 0].T, p @ keys[0, 0], atol=1e-4)


def test_an_fp8_problem_draws_both_copies_and_each_config_reads_its_own():
    spec = find_spec("attention", "sm_90a", "wgmma")
    problem = spec.validate_problem({"B": 1, "H": 2, "S": 64, "D": 64, "fp8": True})
    inputs = {"q": 0, "k": 1, "v": 2, "q8": 3, "k8": 4, "vt8": 5, "scales": 6}
    assert list(spec.kernel_inputs(inputs, {"precision": "e4m3"})) == ["q8", "k8", "vt8", "scales"]
    assert list(spec.kernel_inputs(inputs, {"precision": "exact"})) == ["q", "k", "v"]
    assert spec.max_error({"precision": "e4m3"}, problem) > spec.max_error({"precision": "exact"}, problem)
    mma_sync = find_spec("attention", "sm_90a", "mma_sync")
    assert list(mma_sync.kernel_inputs(inputs, {"precision": "exact"})) == ["q", "k", "v"]
