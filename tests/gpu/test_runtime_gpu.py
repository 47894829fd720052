"""tuner.runtime on a real GPU (run by bench/runtime_overhead.sh on the device).

A small transformer with SDPA swapped for ``tuner.runtime.attention``: outputs within the stored
error bound eager, under torch.compile and replayed in a CUDA graph; torch's current stream
honoured; a bundle running with no compiler and no database. Answers come from the committed
tuning database of the H100 (bench/results/attention_tuned.db.gz, arch sm_90a, which an H200
shares).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.committed import committed_database
from tests.conftest import require
from tests.runtime.isolation import REFUSE_COMPILER_AND_DATABASE

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
F = torch.nn.functional
import tuner.runtime  # noqa: E402 (after torch's check)

MAX_ERROR = 1e-3  # relative L2 the caller allows; the stored configs chosen are within it
BATCH, LENGTH, WIDTH, HEADS = 4, 512, 512, 8  # attention problem B=4,H=8,S=512,D=64: tuned nearby


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    require(torch.cuda.is_available(), "no CUDA GPU here: run bench/runtime_overhead.sh on a GPU machine")
    tuner.runtime.configure(db=committed_database("attention_tuned", tmp_path_factory.mktemp("db")))
    return tuner.runtime


def rel_l2(out, ref) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())


class Layer(torch.nn.Module):
    """A post-norm decoder layer with separate q, k, v projections (as many checkpoints lay them
    out), its attention a function passed in."""

    def __init__(self, attend):
        super().__init__()
        self.attend = attend
        self.q, self.k, self.v, self.o = (torch.nn.Linear(WIDTH, WIDTH, bias=False) for _ in range(4))
        self.up, self.down = torch.nn.Linear(WIDTH, 2 * WIDTH), torch.nn.Linear(2 * WIDTH, WIDTH)
        self.norms = torch.nn.ModuleList(torch.nn.RMSNorm(WIDTH) for _ in range(2))

    def heads(self, projection, x):
        return projection(x).unflatten(-1, (HEADS, WIDTH // HEADS)).transpose(1, 2)

    def forward(self, x):
        attended = self.attend(self.heads(self.q, x), self.heads(self.k, x), self.heads(self.v, x))
        x = self.norms[0](x + self.o(attended.transpose(1, 2).flatten(2)))
        return self.norms[1](x + self.down(F.silu(self.up(x))))


def model(attend):
    torch.manual_seed(0)
    return torch.nn.Sequential(Layer(attend), Layer(attend)).cuda().half().eval()


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def tuned(q, k, v):
    return tuner.runtime.attention(q, k, v, causal=True, max_error=MAX_ERROR)


def inputs(seed: int):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(BATCH, LENGTH, WIDTH, device="cuda", generator=generator).half()


def test_attention_alone_is_within_the_bound_of_the_config_it_chose(rt):
    q, k, v = (torch.randn(BATCH, HEADS, LENGTH, WIDTH // HEADS, device="cuda").half() for _ in range(3))
    with torch.no_grad():
        out = tuned(q, k, v)
    decision = rt.decisions()[-1]
    assert decision.choice is not None, decision.reason
    assert decision.choice.rel_l2 <= MAX_ERROR
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert rel_l2(out, reference) <= MAX_ERROR


@pytest.mark.parametrize("mode", ["eager", "compile", "compile-reduce-overhead", "cuda-graph"])
def test_a_model_with_runtime_attention_matches_sdpa_within_the_bound(rt, mode):
    ours, theirs = model(tuned), model(sdpa)
    x = inputs(1)
    with torch.no_grad():
        expected = theirs(x)
        if mode == "eager":
            out = ours(x)
        elif mode.startswith("compile"):
            options = {"mode": "reduce-overhead"} if mode.endswith("overhead") else {}
            compiled = torch.compile(ours, fullgraph=True, **options)
            for _ in range(3):  # reduce-overhead records its graph on a later call
                out = compiled(x)
        else:
            out = replayed(ours, x)
    assert rel_l2(out, expected) <= MAX_ERROR
    chosen = [d for d in rt.decisions() if d.problem.get("S") == LENGTH and d.max_error == MAX_ERROR]
    assert chosen and all(d.choice is not None for d in chosen), [d.reason for d in chosen]


def replayed(module, x):
    """The module captured in a CUDA graph on one input, replayed on ``x`` copied into it."""
    static = inputs(2)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture: plans are made and kernels loaded
        for _ in range(2):
            module(static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = module(static)
    static.copy_(x)
    graph.replay()
    torch.cuda.synchronize()
    return static_out.clone()


def test_launches_go_to_torchs_current_stream(rt):
    shape = (BATCH, HEADS, LENGTH, WIDTH // HEADS)
    q, k, v = (torch.randn(shape, device="cuda").half() for _ in range(3))
    fresh = torch.randn(shape, device="cuda").half()
    with torch.no_grad():
        tuned(q, k, v)  # plan made and loaded
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            torch.cuda._sleep(200_000_000)  # holds the side stream about 0.1 s
            q.copy_(fresh)                  # ordered before the launch only on this stream
            out = tuned(q, k, v)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
    reference = F.scaled_dot_product_attention(fresh.float(), k.float(), v.float(), is_causal=True)
    assert rel_l2(out, reference) <= MAX_ERROR


HIDDEN = REFUSE_COMPILER_AND_DATABASE + textwrap.dedent("""
    import torch
    import tuner.runtime as rt
    rt.configure(bundle=sys.argv[1])
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 4, 384, 64, device="cuda", generator=generator).half() for _ in range(3))
    out = rt.attention(q, k, v, causal=True)
    reference = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    (decision,) = rt.decisions()
    assert decision.choice is not None, decision.reason
    print("origin", decision.choice.origin)
    print("rel_l2", float((out.float() - reference).norm() / reference.norm()))
""")


def test_a_bundle_runs_with_no_compiler_and_no_database(tmp_path):
    require(torch.cuda.is_available(), "no CUDA GPU here")
    url = f"sqlite:///{tmp_path / 'tuned.db'}"
    run = [sys.executable, "-m", "tuner", "run", "--db", url, "--executor", "local", "--trials", "8",
           "--seed", "2", "--shape", "B=2,H=4,S=384,D=64,causal=true", "--dtype", "fp16", "--no-progress"]
    subprocess.run(run, check=True, cwd=tmp_path)
    subprocess.run([sys.executable, "-m", "tuner", "export", "--db", url, "--bundle", str(tmp_path / "b")],
                   check=True, cwd=tmp_path)
    os.unlink(tmp_path / "tuned.db")
    path = ":".join(p for p in os.environ["PATH"].split(":") if not (Path(p) / "nvcc").exists())
    env = {k: v for k, v in os.environ.items()
           if k not in ("TUNER_DB", "CUDA_HOME", "CUDA_PATH", "TUNER_BUNDLE")}
    env.update(PATH=path, TUNER_CACHE_DIR=str(tmp_path / "empty-cache"))
    result = subprocess.run([sys.executable, "-c", HIDDEN, str(tmp_path / "b")], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"origin bundle {tmp_path / 'b'}" in result.stdout
    error = float(result.stdout.split("rel_l2")[1])
    assert error <= 2 * 2e-3  # the template's own bound for fp16 (inexact variants: twice it)
    assert not (tmp_path / "empty-cache").exists()
