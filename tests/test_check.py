"""`tuner check` on a machine with no GPU: the space, what check() admits, every admitted config
compiled for the arch with the real compilers (nvcc, cc), failures named, bad input refused."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tuner.cli import main
from tuner.kernel_templates import load_spec_file
from tuner.workers.cuda_compile import ToolchainMissing, nvcc_path

EXAMPLE = "examples/softmax_cuda.py"

# A CUDA template one of whose two variants does not compile, and whose check() rejects a third.
BROKEN = '''
from tuner.kernel_templates import KernelSpec, OutputSpec, Param, Source

class Half(KernelSpec):
    name = "half"
    backend = "cuda"
    archs = ("sm_80", "sm_90a")
    params = (Param("value", ("0.5f", "half_of_nothing", "2.0f")),)

    def check(self, config, problem, device):
        return "2.0f doubles, it does not halve" if config["value"] == "2.0f" else None

    def render(self, config, problem):
        code = 'extern "C" __global__ void half(const float *x, float *y) {\\n'
        code += f'  y[threadIdx.x] = {config["value"]} * x[threadIdx.x];\\n}}\\n'
        return Source("cuda", code, "half", block=(32, 1, 1))

    def make_inputs(self, problem, rng): ...
    def output_spec(self, problem): return OutputSpec((32,), "float32")
    def reference(self, inputs, problem): ...
    def flops(self, problem): return 32.0
    def bytes_moved(self, problem): return 256.0
'''


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch, request):
    monkeypatch.chdir(request.config.rootpath)


def nvcc() -> None:
    try:
        nvcc_path()
    except ToolchainMissing:
        require(False, "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")


@pytest.mark.parametrize("arch", [a for a in load_spec_file(EXAMPLE).archs if a != "sm_90a"])
def test_the_cuda_example_compiles_for_each_of_its_archs(arch, capsys):
    """sm_90a compiles the whole space in tests/test_readme.py; a sample for the others."""
    nvcc()
    assert main(["check", "--arch", arch, "--template", EXAMPLE, "--sample", "2", "--seed", "1",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"2 of 2 configs compiled for {arch}; 0 failed" in out and "registers" in out


def test_shared_memory_beyond_the_arch_is_rejected_with_the_reason(capsys):
    nvcc()
    # A cached row of 65536 floats is 256 KB: over sm_90a's 227 KB, so half the space is out.
    code = main(["check", "--arch", "sm_90a", "--template", EXAMPLE, "--shape", "cols=65536",
                 "--sample", "1", "--no-progress"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert "check() admits 16, rejects 16" in out and "16 rejected: a row of 65536 floats" in out


def test_a_config_that_fails_to_compile_is_named_with_its_error(tmp_path, capsys):
    nvcc()
    template = tmp_path / "half.py"
    template.write_text(BROKEN)
    code = main(["check", "--arch", "sm_80", "--template", str(template), "--no-progress"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1  # a config that does not compile fails the check
    assert "check() admits 2, rejects 1" in out and "1 rejected: 2.0f doubles" in out
    assert "1 of 2 configs compiled for sm_80; 1 failed" in out
    assert "1 failed: kernel.cu(2): error: identifier \"half_of_nothing\" is undefined" in out


def test_the_c_example_checks_on_the_cpu(capsys):
    assert main(["check", "--arch", "cpu", "--template", "examples/softmax_spec.py", "--sample", "3",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "check() admits 12" in out and "3 of 3 configs compiled for cpu" in out


@pytest.mark.parametrize(("args", "says"), [
    (["--arch", "sm_90a", "--template", "SYNTAX"], "syntax error at line 1"),
    (["--arch", "sm_12", "--template", EXAMPLE], "unknown arch 'sm_12'"),
    (["--arch", "sm_90a", "--template", EXAMPLE, "--sample", "0"], "--sample must be at least 1"),
    (["--arch", "cpu", "--template", EXAMPLE], "runs on sm_80"),
    (["--arch", "sm_90a", "--template", EXAMPLE, "--shape", "cols=x"], "cols must be an integer"),
])
def test_bad_input_is_one_line_and_exit_2(args, says, tmp_path, capsys):
    broken = tmp_path / "syntax.py"
    broken.write_text("class Broken(:\n")
    code = main(["check", *[str(broken) if a == "SYNTAX" else a for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.count("\n") == 1, err
