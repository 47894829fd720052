"""Stream-K in the Hopper GEMM on the CPU: which configs and problems check() admits it for, what
render() asks of the launcher (every SM, a workspace), and its decomposition (hopper::StreamK,
compiled as host code by nvcc and run on the CPU): every (tile, K block) unit done exactly once,
the whole tiles first, each block's stream-K range contiguous and balanced, each shared tile
finished by the segment holding its last K block, whose peers are exactly the other segments of
it; and the waits cannot cycle: a block waits only in its last work, only on blocks of lower index
(so it ends whether the grid is resident at once or its blocks start in order), each of which
publishes its part in its first stream-K work, before any wait of its own.
"""

from __future__ import annotations

import hashlib
import itertools
import subprocess
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import require
from tuner.kernel_templates import Target, canonical_json, find_spec
from tuner.kernel_templates.gemm_cuda import DEFAULT_SM_COUNT
from tuner.workers import get_backend
from tuner.workers.cuda_compile import ToolchainMissing, nvcc_path

HEADERS = Path(__file__).resolve().parents[1] / "kernel_templates"
PROGRAM = r"""
#include <cstdio>
#include <cstdlib>
#include "hopper.cuh"
int main(int argc, char **argv) {
  for (int a = 1; a + 2 < argc; a += 3) {
    const hopper::StreamK sk{atoi(argv[a]), atoi(argv[a + 1]), atoi(argv[a + 2])};
    printf("case %d %d %d\n", sk.tiles, sk.k_blocks, sk.grid);
    for (int block = 0; block < sk.grid; block++)
      sk.for_each_work(block, [&](int tile, int kb_begin, int kb_end) {
        printf("w %d %d %d %d\n", block, tile, kb_begin, kb_end);
        if (kb_begin > 0 && kb_end == sk.k_blocks)  // as the kernel asks: the end of a shared tile
          sk.for_each_peer(block, tile, [&](int peer) { printf("p %d %d %d\n", block, tile, peer); });
      });
  }
}
"""
# (tiles, K blocks, grid): 3000^3 and 1000x5000x3000 in 128x256 and 128x128 tiles on 132 SMs, fewer
# tiles than blocks (one tile, fewer units than blocks), one K block, a tile short of a wave, a
# tile past one, whole waves (no stream-K), small grids.
CASES = [(288, 47, 132), (160, 47, 132), (828, 47, 132), (8, 65, 132), (1, 2, 132), (1, 1, 132), (3, 1, 132),
         (131, 47, 132), (133, 5, 132), (264, 47, 132), (5, 3, 7), (8, 3, 5), (13, 4, 6), (7, 7, 7), (2, 9, 3),
         (1, 200, 132), (100, 1000, 114)]


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    try:
        nvcc = nvcc_path()
    except ToolchainMissing:
        require(False, "nvcc is not installed (set CUDA_HOME or install the CUDA toolkit)")
    folder = tmp_path_factory.mktemp("stream_k")
    (folder / "stream_k.cu").write_text(PROGRAM)
    # 20013/20015: host lambdas called from the __host__ __device__ templates, as intended here
    subprocess.run([nvcc, "-x", "cu", "-std=c++17", "-arch=sm_90a", "-diag-suppress=20013,20015", f"-I{HEADERS}",
                    str(folder / "stream_k.cu"), "-o", str(folder / "stream_k")], check=True, capture_output=True)
    return folder / "stream_k"


def decompositions(program: Path) -> dict[tuple[int, int, int], tuple[list, list]]:
    """(tiles, k_blocks, grid) -> (works as (block, tile, kb_begin, kb_end), peers as (owner, tile, peer))."""
    text = subprocess.run([str(program), *(str(v) for case in CASES for v in case)], check=True,
                          capture_output=True, text=True).stdout
    found: dict[tuple[int, int, int], tuple[list, list]] = {}
    for line in text.splitlines():
        kind, *values = line.split()
        numbers = tuple(map(int, values))
        if kind == "case":
            works, peers = found.setdefault(numbers, ([], []))
        elif kind == "w":
            works.append(numbers)
        else:
            peers.append(numbers)
    return found


def test_every_unit_once_whole_tiles_first_ranges_contiguous_and_balanced(program: Path) -> None:
    found = decompositions(program)
    assert set(found) == set(CASES)
    for (tiles, k_blocks, grid), (works, _) in found.items():
        case = (tiles, k_blocks, grid)
        whole = tiles - tiles % grid
        units = [(tile, kb) for _, tile, begin, end in works for kb in range(begin, end)]
        assert sorted(units) == [(t, kb) for t in range(tiles) for kb in range(k_blocks)], case
        ranges = []
        for block in range(grid):
            mine = [(t, b, e) for w_block, t, b, e in works if w_block == block]
            assert all(b < e for _, b, e in mine), case
            assert [t for t, _, _ in mine if t < whole] == list(range(block, whole, grid)), case
            assert all((b, e) == (0, k_blocks) for t, b, e in mine if t < whole), case
            streamed = sorted(((t - whole) * k_blocks + b, (t - whole) * k_blocks + e)
                              for t, b, e in mine if t >= whole)
            assert all(prev[1] == cur[0] for prev, cur in itertools.pairwise(streamed)), case  # contiguous
            assert len(streamed) <= 2, case
            ranges.append((streamed[0][0], streamed[-1][1]) if streamed else None)
        filled = [r for r in ranges if r]
        assert all(prev[1] == cur[0] for prev, cur in itertools.pairwise(filled)), case  # in block order
        lengths = [r[1] - r[0] if r else 0 for r in ranges]
        assert sum(lengths) == tiles % grid * k_blocks and max(lengths) - min(lengths) <= 1, case


def test_finishers_wait_for_exactly_the_other_parts_of_their_tiles_and_cannot_cycle(program: Path) -> None:
    for (tiles, k_blocks, grid), (works, peers) in decompositions(program).items():
        case = (tiles, k_blocks, grid)
        whole = tiles - tiles % grid
        parts = defaultdict(list)
        for block, tile, begin, end in works:
            if tile >= whole:
                parts[tile].append((block, begin, end))
        waits = defaultdict(set)
        for finisher, tile, peer in peers:
            waits[(finisher, tile)].add(peer)
        for tile, segments in parts.items():
            finishers = [block for block, _, end in segments if end == k_blocks]
            assert len(finishers) == 1, (case, tile)
            others = {block for block, _, end in segments if end < k_blocks}
            assert waits.get((finishers[0], tile), set()) == others, (case, tile)
            assert all(peer < finishers[0] for peer in others), (case, tile)  # started before it
        for block in range(grid):
            mine = [(t, b, e) for w_block, t, b, e in works if w_block == block]
            publishing = [i for i, (t, b, e) in enumerate(mine) if t >= whole and e < k_blocks]
            # an earlier part of a tile (published, never waiting) comes first in the block's range
            first_streamed = next((i for i, (t, _, _) in enumerate(mine) if t >= whole), None)
            assert len(publishing) <= 1 and (not publishing or publishing[0] == first_streamed), (case, block)
            waiting = [i for i, (t, b, e) in enumerate(mine) if (block, t) in waits]
            assert all(i == len(mine) - 1 for i in waiting), (case, block)  # only its last work waits
    assert len(decompositions(program)[(1, 200, 132)][1]) == 131  # one tile over every block


def test_whole_waves_leave_no_tile_to_stream_k(program: Path) -> None:
    works, peers = decompositions(program)[(264, 47, 132)]
    assert not peers and all((b, e) == (0, 47) for _, _, b, e in works)


SPEC = find_spec("gemm", "sm_90a")
DEVICE = get_backend("cuda").device(Target.documented("sm_90a"))
STREAM_K = {"block_m": 128, "block_n": 256, "block_k": 64, "stages": 4, "consumers": 2, "cluster": 1,
            "persistent": True, "raster": "m", "epilogue": "tma_half", "split_k": 1, "schedule": "cooperative",
            "precision": "native", "stream_k": True}


def test_check_admits_stream_k_on_part_empty_last_waves_of_persistent_cooperative_grids() -> None:
    odd, wide = (SPEC.validate_problem({"M": m, "N": n, "K": k}) for m, n, k in ((3000, 3000, 3000),
                                                                                  (1000, 5000, 3000)))
    assert SPEC.check(STREAM_K, odd, DEVICE) is None  # 24 x 12 = 288 tiles: 2 waves and 24 tiles
    assert SPEC.check(STREAM_K, wide, DEVICE) is None  # 8 x 20 = 160 tiles
    few = SPEC.validate_problem({"M": 512, "N": 512, "K": 4099})  # 8 tiles on 132 SMs
    assert SPEC.check(STREAM_K, few, DEVICE) is None
    even = SPEC.validate_problem({"M": 128 * 12, "N": 256 * 22, "K": 4096})  # 264 tiles: 2 whole waves
    assert "2 whole waves" in SPEC.check(STREAM_K, even, DEVICE)
    assert SPEC.check(STREAM_K | {"stream_k": False}, even, DEVICE) is None
    for change in ({"persistent": False}, {"schedule": "pingpong", "block_m": 64, "epilogue": "tma"},
                   {"cluster": 2}):
        assert "persistent=True, the cooperative schedule, cluster=1" in SPEC.check(STREAM_K | change, odd, DEVICE)
    assert "32 bits" in SPEC.check(STREAM_K, SPEC.validate_problem({"M": 3000, "N": 3000, "K": 2**30}), DEVICE)
    # the SM count of the device at hand decides the waves: 288 tiles on 144 SMs are two whole ones
    wider = replace(DEVICE, limits={**DEVICE.limits, "sm_count": 144})
    assert "2 whole waves" in SPEC.check(STREAM_K, odd, wider)


def test_render_asks_for_every_sm_and_a_workspace_a_block() -> None:
    few = SPEC.validate_problem({"M": 512, "N": 512, "K": 4099})
    source = SPEC.render(STREAM_K, few)
    assert source.grid == (DEFAULT_SM_COUNT, 1, 1) and source.persistent  # 8 tiles, yet every SM
    assert source.workspace_bytes == (128 * 256 + 2) * 4  # a tile's fp32 sums and a flag per consumer
    assert "#define STREAM_K 1" in source.code
    odd = SPEC.render(STREAM_K, SPEC.validate_problem({"M": 3000, "N": 3000, "K": 3000}))
    assert odd.grid == (288, 1, 1) and odd.code_digest() == source.code_digest()
    plain = SPEC.render(STREAM_K | {"stream_k": False}, few)
    assert plain.workspace_bytes == 0 and plain.grid == (8, 1, 1) and "#define STREAM_K 0" in plain.code
    # a config stored before the knob renders as stream_k=False
    stored = {k: v for k, v in STREAM_K.items() if k != "stream_k"}
    assert SPEC.render(stored, few) == plain and SPEC.check(stored, few, DEVICE) is None
    assert next(p for p in SPEC.params if p.name == "stream_k").stored_default is False


def test_the_workspace_enters_the_digest_only_where_there_is_one() -> None:
    source = SPEC.render(STREAM_K, SPEC.validate_problem({"M": 3000, "N": 3000, "K": 3000}))
    without = replace(source, workspace_bytes=0)
    assert source.digest() != without.digest()
    text = canonical_json({"language": without.language, "code": without.code, "entry": without.entry,
                           "options": list(without.options), "scalars": [list(s) for s in without.scalars],
                           "grid": list(without.grid), "block": list(without.block),
                           "shared_bytes": without.shared_bytes,
                           "tensor_maps": [m.describe() for m in without.tensor_maps], "persistent": True})
    assert without.digest() == hashlib.sha256(text.encode()).hexdigest()  # as before the field existed
