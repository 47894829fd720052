"""Per-tensor e4m3 (FP8) scaling, shared by the templates that quantize their inputs (GEMM, attention)."""

from __future__ import annotations

from typing import Any

E4M3_MAX = 448.0  # e4m3's largest finite value: a tensor's largest magnitude is scaled to it


def e4m3_scale(x: Any) -> Any:
    """The fp32 scale (a 0-d tensor) that maps ``x``'s largest magnitude to E4M3_MAX:
    ``x ≈ (x / scale).to(float8_e4m3fn).float() * scale``; never 0, so an all-zero ``x`` divides."""
    import torch

    return (x.abs().amax().float() / E4M3_MAX).clamp(min=torch.finfo(torch.float32).tiny)
