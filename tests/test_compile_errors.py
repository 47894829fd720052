"""A compile failure reads as the compiler's first ``error:`` line, in the stored trial and in the
run's summary, for the C compiler and nvcc alike (real compilers, a real run)."""

from __future__ import annotations

from tests.conftest import require
from tuner.cli import main
from tuner.db import Store
from tuner.kernel_templates import Source, Target
from tuner.service import Service
from tuner.workers import get_backend

# Half of its variants use a name that is never declared, inside a function: gcc's first line
# of output is then "kernel.c: In function 'scale':", its first error line says what is wrong.
TEMPLATE = '''
import numpy as np
from tuner.kernel_templates import KernelSpec, OutputSpec, Param, Source

CODE = """
#include <stdint.h>
void scale(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = FACTOR * x[i];
}
"""

class Scale(KernelSpec):
    name = "scale"
    params = (Param("factor", ("2.0f", "undeclared_factor")), Param("opt", ("-O1", "-O2")))

    def render(self, config, problem):
        return Source("c", f"#define FACTOR {config['factor']}\\n" + CODE, "scale",
                      options=(config["opt"],), scalars=(("int64", 256),))

    def make_inputs(self, problem, rng):
        return {"x": rng.standard_normal(256, dtype=np.float32)}

    def output_spec(self, problem):
        return OutputSpec((256,), "float32")

    def reference(self, inputs, problem):
        return 2.0 * inputs["x"].astype(np.float64)

    def flops(self, problem):
        return 256.0

    def bytes_moved(self, problem):
        return 2048.0
'''


def test_the_stored_reason_and_the_summary_name_the_first_error_line(tmp_path, capsys):
    template = tmp_path / "scale.py"
    template.write_text(TEMPLATE)
    db = f"sqlite:///{tmp_path / 'tuner.db'}"
    code = main(["run", "--arch", "cpu", "--template", str(template), "--sampler", "grid",
                 "--executor", "local", "--no-progress", "--db", db])
    out = capsys.readouterr().out
    assert code == 0
    with Store.open(db, create=False) as store:
        trials = Service(store).trials("scale-cpu-", status="compile_error").items
    assert len(trials) == 2
    for trial in trials:
        assert trial.reason.startswith("compile failed: kernel.c:"), trial.reason
        assert "error:" in trial.reason and "undeclared_factor" in trial.reason, trial.reason
        assert "tuner-cc-" not in trial.reason and "In function" in trial.log
    assert "2 failed with compile_error: compile failed: kernel.c:" in " ".join(out.split()), out


def test_nvcc_failures_name_the_first_error_line():
    from tuner.workers.cuda_compile import ToolchainMissing, nvcc_path

    try:
        nvcc_path()
    except ToolchainMissing:
        require(False, "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")
    code = 'extern "C" __global__ void k(float *y) {\n  y[threadIdx.x] = not_declared;\n}\n'
    artifact = get_backend("cuda").compile(Source("cuda", code, "k"), Target.documented("sm_90a"))
    assert artifact.path is None
    assert artifact.error.startswith("kernel.cu(2): error:") and "not_declared" in artifact.error, artifact.error
