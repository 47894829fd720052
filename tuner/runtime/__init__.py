"""Tuned kernels in a PyTorch program: the stored best config of each call's problem, launched.

    import tuner.runtime
    tuner.runtime.configure(db="sqlite:///tuner.db")      # or bundle="DIR" (`tuner export --bundle`)
    out = tuner.runtime.attention(q, k, v, causal=True, max_error=1e-3)  # k, v: H or fewer heads (GQA)
    tuner.runtime.attention(q, k, v, causal=True, out=out)   # into a tensor of yours: no allocation
    c = tuner.runtime.gemm(a, b)                           # a @ b; gemm(x, w.T) is F.linear(x, w)
    softmax = tuner.runtime.kernel("examples/softmax_spec.py")
    y = softmax(x, rows=256, cols=512)

Each kernel is also a torch custom operator (``torch.ops.tuner.attention``,
``torch.ops.tuner.gemm``, ``torch.ops.tuner.kernel``; ``attention_out`` and ``gemm_out`` for out=)
with a fake implementation, for torch.compile and CUDA graphs.
:func:`decisions` tells what was chosen for every call shape and why.
"""

from .answers import Answers, Choice, DatabaseAnswers, NoAnswer
from .attention import attention
from .bundle import BundleAnswers, BundleError
from .gemm import gemm
from .kernel import TemplateKernel, kernel
from .launch import LaunchError
from .runtime import Decision, FallbackWarning, NotTuned, Runtime, configure, current


def decisions() -> list[Decision]:
    """What the process's runtime chose for every call shape so far."""
    return current().decisions()


__all__ = ["Answers", "BundleAnswers", "BundleError", "Choice", "DatabaseAnswers", "Decision",
           "FallbackWarning", "LaunchError", "NoAnswer", "NotTuned", "Runtime", "TemplateKernel",
           "attention", "configure", "current", "decisions", "gemm", "kernel"]
