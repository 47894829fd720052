"""Latency statistics and numerical error metrics, shared by every backend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .measurement import Timing


def summarize(samples_s: Sequence[float], clock_mhz: float | None = None) -> Timing:
    values = np.asarray(samples_s, dtype=np.float64)
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return Timing(median_s=float(median), q1_s=float(q1), q3_s=float(q3),
                  min_s=float(values.min()), max_s=float(values.max()),
                  mean_s=float(values.mean()), repeats=int(values.size), clock_mhz=clock_mhz)


# Why a trial cannot be verified when the template's own answer is not finite: its fault, not
# the kernel's, and a message blaming the kernel's output would send the user the wrong way.
REFERENCE_NOT_FINITE = ("the template's reference holds NaN or inf: fix its reference() (or the "
                        "inputs make_inputs() draws); the kernel's output could not be verified")


def error_metrics(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(relative L2 error, max absolute error), both ``inf`` when the output holds a NaN or inf."""
    out64 = np.asarray(out, dtype=np.float64)
    ref64 = np.asarray(ref, dtype=np.float64)
    if out64.shape != ref64.shape:
        raise ValueError(f"output shape {out64.shape} differs from reference {ref64.shape}")
    if not np.all(np.isfinite(out64)):
        return float("inf"), float("inf")
    diff = out64 - ref64
    denom = float(np.linalg.norm(ref64))
    rel = float(np.linalg.norm(diff)) / denom if denom > 0 else float(np.linalg.norm(diff))
    return rel, float(np.max(np.abs(diff))) if diff.size else 0.0
