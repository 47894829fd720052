"""What the benches' markdown reports share: a heading that says when, where and how the bench
ran and what it did, and pipe tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def heading(title: str, run: str, description: str) -> list[str]:
    """The title, the line on the run (date, machine, command, load), and what was measured."""
    return [f"# {title}", "", run, "", description, ""]


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table; a cell's ``|`` is written ``/``, so that no cell splits in two."""
    def line(cells: Iterable[object]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |"

    return [line(header), line("---" for _ in header), *(line(row) for row in rows)]
