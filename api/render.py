"""Server-side rendering helpers: the Jinja2 environment (autoescape on) and source highlighting."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import CLexer, CudaLexer
from starlette.templating import Jinja2Templates

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

_FORMATTER = HtmlFormatter(cssclass="highlight", linenos="table")
_LEXERS = {"cpu": CLexer, "cuda": CudaLexer}


def study_url(name: str) -> str:
    """The study page's path; the name is percent-encoded (path params are not, in Starlette)."""
    return f"/studies/{quote(name, safe='')}"


def trial_url(study: str, number: int) -> str:
    return f"{study_url(study)}/trials/{int(number)}"


def seconds(value: float | None) -> str:
    """A latency in the unit that reads best."""
    if value is None or not math.isfinite(value):
        return "–"
    if value < 1e-3:
        return f"{value * 1e6:.1f} µs"
    if value < 1:
        return f"{value * 1e3:.3f} ms"
    return f"{value:.3f} s"


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2e}"


def key_values(mapping: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={mapping[key]}" for key in sorted(mapping))


def highlight_source(code: str, backend: str) -> Markup:
    """The source as HTML; pygments escapes every character of it."""
    lexer = _LEXERS.get(backend, CLexer)()
    return Markup(highlight(code, lexer, _FORMATTER))


def pygments_css() -> str:
    return _FORMATTER.get_style_defs(".highlight")


def templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    env.filters.update(seconds=seconds, number=number, kv=key_values)
    env.globals.update(study_url=study_url, trial_url=trial_url)
    return Jinja2Templates(env=env)
