"""The target: what a kernel is built for and measured on, one frozen value (as Triton's ``GPUTarget``).

It is made once, where ``--arch`` is resolved (``tuner.arch.resolve_target``), from the table of
known archs below; the measuring process fills in its device's name and limits
(``Backend.device``); every layer after that reads the target's fields instead of the arch string.
A spec's ``check()`` gets it as its ``device`` argument (``Device`` is the same class, the name
templates have always used).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ArchInfo:
    """What an arch name stands for: its backend, compute capability and documented limits."""

    backend: str
    capability: tuple[int, int] | None = None
    limits: Mapping[str, int] = field(default_factory=dict)


def _cuda(major: int, minor: int, max_shared: int, shared_per_sm: int) -> ArchInfo:
    # Opt-in shared memory per block and per SM (CUDA programming guide, compute capabilities
    # table): what a spec's check() sees for an arch when there is no GPU to ask.
    return ArchInfo("cuda", (major, minor), {"max_shared_bytes": max_shared,
                                             "max_shared_bytes_per_sm": shared_per_sm,
                                             "max_threads_per_block": 1024})


ARCHS: Mapping[str, ArchInfo] = {
    "cpu": ArchInfo("cpu"),
    "sm_80": _cuda(8, 0, 166912, 167936),
    "sm_86": _cuda(8, 6, 101376, 102400),
    "sm_89": _cuda(8, 9, 101376, 102400),
    "sm_90": _cuda(9, 0, 232448, 233472),
    "sm_90a": _cuda(9, 0, 232448, 233472),
}


@dataclass(frozen=True)
class Target:
    """One target: ``arch`` (``"cpu"``, ``"sm_90a"``, ...), the device's ``name`` where known,
    ``limits`` (``max_shared_bytes``, ``max_shared_bytes_per_sm``, ``max_threads_per_block``,
    ``sm_count``, ``cores``, ...), ``backend`` (``"cpu"`` or ``"cuda"``) and the compute
    ``capability`` (``(9, 0)``; None for the CPU).

    ``Target("sm_90a")`` (or ``Device(arch, name, limits)``, as templates' tests write it) takes
    the backend and capability of a known arch from :data:`ARCHS`.
    """

    arch: str
    name: str = ""
    limits: Mapping[str, int] = field(default_factory=dict)
    backend: str = ""
    capability: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        info = ARCHS.get(self.arch)
        if not self.backend:
            if info is None:
                raise ValueError(f"unknown arch {self.arch!r}: name its backend, or use one of {', '.join(ARCHS)}")
            object.__setattr__(self, "backend", info.backend)
        if self.capability is None and info is not None:
            object.__setattr__(self, "capability", info.capability)

    @classmethod
    def documented(cls, arch: str) -> Target:
        """The target of a known arch with its documented limits (no device asked)."""
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}: use one of {', '.join(ARCHS)}")
        return cls(arch, limits=dict(ARCHS[arch].limits))

    @property
    def capability_text(self) -> str | None:
        """``"9.0"``, as nvidia-smi prints it; None for the CPU."""
        return None if self.capability is None else f"{self.capability[0]}.{self.capability[1]}"

    def with_device(self, name: str, limits: Mapping[str, int]) -> Target:
        """This target as one measuring device has it: its name, its limits over the documented ones."""
        return replace(self, name=name, limits={**self.limits, **limits})


Device = Target  # the name a spec's check() has always been given
