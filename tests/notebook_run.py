"""Execute the example notebooks on tiny settings, once per test process (shared by tests)."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


@functools.cache
def executed_notebook(name: str, timeout: int = 600):
    """Run experiments/NAME top to bottom with INTERP_NB_TINY=1 in a fresh folder; returns
    (notebook node, working folder). Raises nbclient's CellExecutionError on the first failing
    cell."""
    import nbformat
    from nbclient import NotebookClient

    workdir = Path(tempfile.mkdtemp(prefix=f"nb-{Path(name).stem}-"))
    nb = nbformat.read(EXPERIMENTS / name, as_version=4)
    env = {"INTERP_NB_TINY": "1", "INTERP_NB_RUN_DIR": str(workdir / "run")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    try:
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(workdir)}},
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, workdir


def notebook_html(name: str) -> Path:
    """The executed notebook exported to HTML by nbconvert.

    The `basic` template (outputs and cells, no page chrome) wrapped in a minimal page:
    nbconvert's full templates add require.js and MathJax from a CDN, which is nbconvert's
    page chrome and not part of the notebook's outputs, and would fail offline.
    """
    from nbconvert import HTMLExporter

    nb, workdir = executed_notebook(name)
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta "
        f"charset='utf-8'><title>{Path(name).stem}</title></head>"
        f"<body>{body}</body></html>"
    )
    path = workdir / (Path(name).stem + ".html")
    path.write_text(page, encoding="utf-8")
    return path
