"""The report and an executed notebook in a real headless browser (Debian's chromium via playwright).

Checks: no console errors and no network request, every figure rendered non-empty, moving a
checkpoint slider changes what is drawn (plotly and circuitsvis), and a screenshot is
saved (to pytest's tmp folder; its path is printed). Skipped only when chromium is absent.
Never run `playwright install`: the system browser is used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# In CI (CI=true) a missing browser is a failure, not a skip: .ci/run installs it.
IN_CI = os.environ.get("CI") == "true"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not IN_CI, reason="chromium is not installed (apt-get install -y chromium)"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download needed)"
    )
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


class Loaded:
    """A page opened from a file, with its console errors and its non-file requests."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "request",
            lambda r: (
                None
                if r.url.startswith(("file:", "data:", "blob:"))
                else self.requests.append(r.url)
            ),
        )
        self.page.goto(path.as_uri(), wait_until="load", timeout=120_000)
        self.page.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot .main-svg').length > 0", timeout=60_000
        )

    def plot_sizes(self) -> list[tuple[int, int, int]]:
        """Per plotly figure: (width, height, number of drawn marks)."""
        return self.page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => {
            const r = gd.getBoundingClientRect();
            const marks = gd.querySelectorAll('.trace path, .trace .point, .hm image, .heatmaplayer image, .scatterlayer path').length;
            return [Math.round(r.width), Math.round(r.height), marks];
        })""")

    def drawn(self, index: int) -> str:
        return self.page.evaluate(f"""() => {{
            const gd = document.querySelectorAll('.js-plotly-plot')[{index}];
            return JSON.stringify(gd.data.map(t => [t.y, t.z, t.line && t.line.width])) +
                   gd.querySelector('.cartesianlayer').innerHTML.length + gd.querySelector('.cartesianlayer').innerHTML;
        }}""")

    def move_slider_to_start(self, index: int) -> None:
        """Click the left end of the figure's checkpoint slider rail (the slider starts at the last step)."""
        gd = self.page.locator(".js-plotly-plot").nth(index)
        gd.scroll_into_view_if_needed()
        rail = gd.locator(".slider-rail-touch-rect").first
        box = rail.bounding_box()
        assert box is not None, "no slider drawn"
        self.page.mouse.click(box["x"] + 3, box["y"] + box["height"] / 2)
        self.page.wait_for_timeout(400)

    def slider_figures(self) -> list[int]:
        """Figures with a checkpoint slider whose first and last checkpoints hold different data."""
        return self.page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map((gd, i) => {
            const s = gd.layout.sliders && gd.layout.sliders[0];
            if (!s) return -1;
            const data = k => JSON.stringify(s.steps[k].args[0]);
            return data(0) !== data(s.steps.length - 1) ? i : -1;
        }).filter(i => i >= 0)""")


def _check_page(page: Loaded, min_figures: int) -> None:
    sizes = page.plot_sizes()
    assert len(sizes) >= min_figures, sizes
    for i, (width, height, marks) in enumerate(sizes):
        assert width > 200 and height > 200 and marks > 0, f"figure {i} is empty: {sizes[i]}"
    # Every circuitsvis view that is shown has drawn something.
    views = page.page.evaluate("""() => Array.from(document.querySelectorAll('.interp-cv-panel'))
        .filter(e => e.style.display !== 'none').map(e => [e.childElementCount, e.getBoundingClientRect().height])""")
    assert views and all(n > 0 and h > 50 for n, h in views), views
    sliders = page.slider_figures()
    assert len(sliders) >= 2, "fewer than two figures have a checkpoint slider over changing data"
    for index in sliders[:3]:
        before = page.drawn(index)
        page.move_slider_to_start(index)
        assert page.drawn(index) != before, f"moving the slider of figure {index} changed nothing"


def _check_attention_slider(page: Loaded) -> None:
    panels = page.page.locator(".interp-attention").first
    slider = panels.locator("input[type=range]")
    if slider.count() == 0:
        return
    visible = "() => Array.from(document.querySelector('.interp-attention').querySelectorAll('.interp-cv-panel')).map(e => e.style.display + ':' + e.innerHTML.length)"
    before = page.page.evaluate(visible)
    slider.evaluate("el => { el.value = 0; el.dispatchEvent(new Event('input')); }")
    page.page.wait_for_timeout(300)
    after = page.page.evaluate(visible)
    assert after != before and after[0].startswith("block") and int(after[0].split(":")[1]) > 100, (
        before,
        after,
    )


def _check_interactive_page(page: Loaded, min_figures: int, screenshot: Path) -> None:
    """Figures drawn, sliders move them, no JS errors, no network requests; keeps a screenshot."""
    _check_page(page, min_figures=min_figures)
    _check_attention_slider(page)
    page.page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")
    assert not page.errors, page.errors
    assert not page.requests, page.requests


def test_report_in_the_browser(browser, tiny_run, tmp_path_factory):
    from interp.cli import main

    assert main(["analyze", str(tiny_run)]) == 0
    page = Loaded(browser, tiny_run / "analysis" / "report.html")
    _check_interactive_page(page, 7, tmp_path_factory.mktemp("screenshots") / "report.png")


def test_executed_notebook_in_the_browser(browser, tmp_path_factory):
    from tests.notebook_run import notebook_html

    page = Loaded(browser, notebook_html("grokking_walkthrough.ipynb"))
    _check_interactive_page(page, 5, tmp_path_factory.mktemp("screenshots") / "notebook.png")


def test_circuits_report_in_the_browser(browser, tmp_path_factory):
    """`--circuits` sections draw, and the discovered circuit's slider changes the graph."""
    import shutil

    from interp.cli import main

    run_dir = tmp_path_factory.mktemp("circuits") / "demo"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "modular_demo", run_dir)
    assert main(["analyze", str(run_dir), "--circuits", "-q"]) == 0
    page = Loaded(browser, run_dir / "analysis" / "report.html")
    sizes = page.plot_sizes()
    assert len(sizes) >= 4 and all(w > 200 and h > 200 and m > 0 for w, h, m in sizes), sizes
    index = page.page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .findIndex(gd => (gd.layout.title.text || '').startsWith('Circuit at step'))""")
    assert index >= 0, "no discovered-circuit figure"
    before = page.drawn(index)
    page.move_slider_to_start(index)
    assert page.drawn(index) != before
    assert not page.errors, page.errors
    assert not page.requests, page.requests
