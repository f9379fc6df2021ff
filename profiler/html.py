"""Offline HTML report: one self-contained file with the run page's charts and the source view.

`plena-profile html PROFILE.json -o report.html`, `emulate --html report.html` and
`plena-profile run|static --html report.html` write it.  Everything is inlined (Plotly's bundle
from the `plotly` wheel, the shared view script profiler/html_assets/profile_view.js, its styles
and the plena-profile document), so the file opens from disk or an e-mail with no network and no
service; the dashboard draws its run page with the same script.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from emulator.outputs import write_text

from .aggregate import Profile
from .report import profile_to_dict

ASSETS = "html_assets"


@cache
def asset_text(name: str) -> str:
    """A file of profiler/html_assets (the view script, its styles, the report template)."""
    return files("profiler").joinpath(ASSETS, name).read_text(encoding="utf-8")


@cache
def plotly_js() -> str:
    """Plotly's JavaScript bundle as shipped in the `plotly` wheel (no network)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def script_safe_json(data: Any) -> str:
    """JSON that can sit inside a <script> element (no `</script>` or `<!--` can end it early)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _inline_script(code: str) -> str:
    # A bundled script containing "</script" would end the element: split the token.
    return code.replace("</script", "<\\/script")


def render_report(doc: dict[str, Any] | Profile, title: str | None = None) -> str:
    """The report of a plena-profile document (or Profile) as one HTML string."""
    from jinja2 import Environment, select_autoescape
    from markupsafe import Markup

    if isinstance(doc, Profile):
        doc = profile_to_dict(doc)
    prog = doc.get("program") or {}
    name = prog.get("name") or f"program {str(prog.get('sha256', ''))[:12]}"
    kind = "static estimate" if doc.get("kind") == "static" else "run"
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = env.from_string(asset_text("report.html"))
    return template.render(
        title=title or f"{name} — PLENA {kind} profile", sha256=prog.get("sha256", ""), kind=kind,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        css=Markup(asset_text("profile_view.css")),
        plotly_js=Markup(_inline_script(plotly_js())),
        view_js=Markup(_inline_script(asset_text("profile_view.js"))),
        profile_json=Markup(script_safe_json(doc)))


def write_report(doc: dict[str, Any] | Profile, path: str | Path, title: str | None = None) -> None:
    write_text(path, render_report(doc, title))
