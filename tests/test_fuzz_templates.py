"""Random shapes and configs at every built-in template: a valid kernel or a clear rejection."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner.kernel_templates import Device, KernelSpec, Source, builtin_specs

DEVICES = {"cpu": Device("cpu", "fuzz cpu", {"cores": 2}),
           "cuda": Device("sm_90a", "fuzz gpu", {"max_shared_bytes": 227 * 1024, "sm_count": 132,
                                                 "max_threads_per_block": 1024})}


def problems(spec: KernelSpec) -> st.SearchStrategy[dict]:
    fields = {}
    for p in spec.problem_params:
        if p.choices is not None:
            fields[p.name] = st.sampled_from(p.choices)
        elif p.kind is bool:
            fields[p.name] = st.booleans()
        elif p.kind is int:
            fields[p.name] = st.integers(min_value=p.minimum or 0, max_value=5000)
        else:
            fields[p.name] = st.text(max_size=8)
    return st.fixed_dictionaries(fields)


def configs(spec: KernelSpec) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({p.name: st.sampled_from(p.choices) for p in spec.params})


@pytest.mark.parametrize("spec", builtin_specs(), ids=lambda s: f"{s.name}-{s.backend}")
def test_check_then_render_never_crashes(spec: KernelSpec):
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def fuzz(data):
        problem = data.draw(problems(spec))
        try:
            problem = spec.validate_problem(problem)
        except ValueError as exc:
            assert str(exc)  # a clear rejection of the problem itself
            return
        config = data.draw(configs(spec))
        reason = spec.check(config, problem, DEVICES[spec.backend])
        if reason is not None:
            assert isinstance(reason, str) and len(reason) > 10
            return
        source = spec.render(config, problem)
        assert isinstance(source, Source) and source.code and source.entry
        assert spec.flops(problem) > 0 and spec.bytes_moved(problem) > 0

    fuzz()
