"""Offline HTML: the JavaScript libraries inlined once per page, never fetched.

A page holds plotly figures and circuitsvis elements. `plotly.js` and the circuitsvis
bundle (`circuitsvis/dist/cdn/iife.js`, which defines the global `CircuitsVis`) are each
written once, as classic scripts at the top of the page, so every later element can use
them and the page needs no network. circuitsvis's own `render` inlines the 1.3 MB bundle
in every element (its `local_src`) or imports it from unpkg (its `cdn_src`); we use
neither, only its bundled file and its prop conversion.

In a notebook each output is its own fragment: `HtmlView` writes the bundle into the first
circuitsvis output of the kernel session only (`include_bundle="auto"`), and later outputs
reuse the global it defined. That keeps an exported notebook to one copy as well.
"""

from __future__ import annotations

import functools
import html
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

#: Browser-side plotly options for every figure: no "edit in Chart Studio" link, and images
#: saved from the mode bar at the figure's own size.
PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "toImageButtonOptions": {"format": "png"},
}


@functools.cache
def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (about 4.6 MB)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


@functools.cache
def circuitsvis_js() -> str:
    """circuitsvis's browser bundle, safe to inline: no source-map URL, no closing script tag."""
    import circuitsvis

    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"//# sourceMappingURL=\S+\s*$", "", text)
    return text.replace("</script", "<\\/script")


def script(js: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{html.escape(v)}"' for k, v in attrs.items())
    return f"<script{extra}>{js}</script>"


def json_for_script(obj: Any) -> str:
    """JSON that is safe inside a <script> element (no `</`, no HTML comment openers)."""
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


_bundle_sent = False


@dataclass
class HtmlView:
    """A piece of HTML that needs the circuitsvis bundle; displays in Jupyter, embeds in pages.

    `body` is HTML plus scripts that use the global `CircuitsVis`.
    """

    body: str
    title: str = ""
    needs_circuitsvis: bool = True

    def html(self, include_bundle: bool = True) -> str:
        """Standalone fragment; with `include_bundle` it works on an empty page."""
        prefix = script(circuitsvis_js()) if include_bundle and self.needs_circuitsvis else ""
        return prefix + self.body

    def _repr_html_(self) -> str:
        # Jupyter: the bundle goes into the first circuitsvis output of this kernel only.
        global _bundle_sent
        include = self.needs_circuitsvis and not _bundle_sent
        _bundle_sent = _bundle_sent or include
        return self.html(include_bundle=include)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(Page(self.title or "interp").add(self).render(), encoding="utf-8")
        return path


def resend_bundle() -> None:
    """Include the circuitsvis bundle again in the next notebook output (e.g. after a page
    reload)."""
    global _bundle_sent
    _bundle_sent = False


def figure_html(fig: go.Figure, div_id: str | None = None) -> str:
    """A plotly figure as a fragment that expects plotly.js to be on the page already."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id or new_id("figure"),
        config=PLOTLY_CONFIG,
    )


@dataclass
class Section:
    anchor: str
    title: str
    html: str
    kind: str  # "plotly", "circuitsvis" or "html"
    note: str = ""


@dataclass
class Page:
    """An offline HTML page assembled from sections; `render()` returns the whole document."""

    title: str
    intro: str = ""
    sections: list[Section] = field(default_factory=list)

    def add(self, item: go.Figure | HtmlView | str, title: str = "", note: str = "") -> Page:
        anchor = f"section-{len(self.sections) + 1}"
        if isinstance(item, go.Figure):
            title = title or (item.layout.title.text or "figure")
            self.sections.append(
                Section(anchor, title, figure_html(item, f"{anchor}-figure"), "plotly", note)
            )
        elif isinstance(item, HtmlView):
            kind = "circuitsvis" if item.needs_circuitsvis else "html"
            self.sections.append(Section(anchor, title or item.title, item.body, kind, note))
        else:
            self.sections.append(Section(anchor, title, str(item), "html", note))
        return self

    @property
    def figure_titles(self) -> list[str]:
        return [s.title for s in self.sections]

    def render(self) -> str:
        head_scripts = []
        if any(s.kind == "plotly" for s in self.sections):
            head_scripts.append(script(plotly_js()))
        if any(s.kind == "circuitsvis" for s in self.sections):
            head_scripts.append(script(circuitsvis_js()))
        toc = "".join(
            f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in self.sections
        )
        body = "".join(
            f'<section id="{s.anchor}" class="interp-section interp-{s.kind}">'
            f"<h2>{html.escape(s.title)}</h2>"
            + (f'<p class="note">{s.note}</p>' if s.note else "")
            + s.html
            + "</section>"
            for s in self.sections
        )
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style>{''.join(head_scripts)}</head>"
            f"<body><h1>{html.escape(self.title)}</h1>{self.intro}"
            f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>{body}</body></html>\n"
        )


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.meta { border-collapse: collapse; font-size: 0.9em; } table.meta td, table.meta th { padding:
2px 10px;
       border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
p.note { color: #555; font-size: 0.92em; max-width: 70em; }
nav ol { columns: 2; font-size: 0.92em; }
.interp-slider { margin: 0.5em 0; font-size: 0.95em; } .interp-slider input { width: 60%;
vertical-align: middle; }
"""


def setup_notebook() -> None:
    """Offline display in Jupyter: plotly.js is written into the notebook once (no CDN, no
    MathJax), each figure as HTML plus plotly's own mimetype (JupyterLab's native renderer),
    and the next circuitsvis view carries the circuitsvis bundle."""
    import plotly.io as pio
    from plotly.io._base_renderers import NotebookRenderer

    class OfflineNotebookRenderer(NotebookRenderer):
        def to_mimebundle(self, fig_dict):
            from plotly.io import to_html

            html = to_html(
                fig_dict,
                config=self.config,
                include_plotlyjs=False,
                include_mathjax=False,
                full_html=False,
                default_width="100%",
                default_height=525,
                validate=False,
            )
            return {"text/html": html}

    pio.renderers["interp_offline"] = OfflineNotebookRenderer(config=PLOTLY_CONFIG)
    pio.renderers.default = "plotly_mimetype+interp_offline"
    resend_bundle()
