"""circuitsvis views that load circuitsvis' JavaScript once per page instead of once per output.

circuitsvis' own render functions put its whole bundle (about 1.3 MB) into every output, so a
notebook with two attention views saves at about 3 MB and the page runs the bundle twice. Here
each output holds only a placeholder, the data and a few lines of JavaScript; the bundle is a
file that JupyterLab itself serves (copied once into this environment's
`share/jupyter/labextensions/mechinterp-course-static/`, a folder JupyterLab serves as static
files and does not load as an extension), and the first view on a page loads it, offline. A
saved notebook draws its views again when reopened in JupyterLab (or Notebook 7) of this
environment.

In Colab, and anywhere with `inline=True`, circuitsvis' own output is returned unchanged (Colab
draws each output in a frame of its own, which cannot share a bundle).

    from utils.vis import attention_patterns
    attention_patterns(tokens=["t1", "t2"], attention=pattern)   # pattern: [head, query, key]
"""

from __future__ import annotations

import html
import json
import os
import sys
import uuid
from pathlib import Path

import circuitsvis
from circuitsvis.utils.convert_props import convert_props

STATIC_DIR_NAME = "mechinterp-course-static"
BUNDLE_NAME = f"circuitsvis-{circuitsvis.__version__}.js"

# Runs in the page: load the bundle once (a promise shared by every view on the page), then draw.
_SCRIPT = """\
<div id="{id}" style="margin: 15px 0;"></div>
<script type="module">
const el = document.getElementById("{id}");
try {{
  const CV = await (window.__mechinterpCircuitsVis ??= new Promise((resolve, reject) => {{
    if (window.CircuitsVis) return resolve(window.CircuitsVis);
    const config = document.getElementById("jupyter-config-data");
    const base = config && JSON.parse(config.textContent).fullLabextensionsUrl;
    if (!base) return reject(new Error("this page is not JupyterLab or Notebook 7"));
    const script = document.createElement("script");
    script.src = base.replace(/\\/$/, "") + "/{static_dir}/{bundle}";
    script.onload = () => resolve(window.CircuitsVis);
    script.onerror = () => reject(new Error("could not load " + script.src));
    document.head.appendChild(script);
  }}).catch((err) => {{ window.__mechinterpCircuitsVis = undefined; throw err; }}));
  const props = {props};
  const thousandths = (x) => Array.isArray(x) ? x.map(thousandths) : x / 1000;
  for (const key of {quantised}) props[key] = thousandths(props[key]);
  CV.render("{id}", CV.{element}, props);
}} catch (err) {{
  el.textContent = "This circuitsvis view was not drawn (" + err.message + "). Run its cell again in "
    + "the course's JupyterLab (python3 course.py lab), or pass inline=True to embed circuitsvis here.";
}}
</script>"""


def bundle_source() -> Path:
    return Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"


def static_dirs() -> list[Path]:
    """Where JupyterLab of this environment serves static files from (its labextensions path)."""
    from jupyter_core.paths import jupyter_data_dir

    return [Path(sys.prefix) / "share" / "jupyter" / "labextensions" / STATIC_DIR_NAME,
            Path(jupyter_data_dir()) / "labextensions" / STATIC_DIR_NAME]


def install_bundle() -> Path | None:
    """Copy circuitsvis' bundle where JupyterLab serves it (once); None if no place is writable."""
    for folder in static_dirs():
        target = folder / BUNDLE_NAME
        if target.exists():
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
            text = bundle_source().read_text(encoding="utf-8")
            # The source map is not shipped: without this line the browser asks for it and logs a 404.
            text = "\n".join(line for line in text.splitlines() if not line.startswith("//# sourceMappingURL"))
            partial = target.with_suffix(f".{os.getpid()}.partial")   # kernels may copy it at once
            partial.write_text(text, encoding="utf-8")
            partial.replace(target)
            return target
        except OSError:
            continue
    return None


class View:
    """One circuitsvis view; Jupyter shows its HTML, `str()` is circuitsvis' own (inline) HTML.

    The arrays named in `quantised` (values in [0, 1], like attention probabilities) travel as
    integers in thousandths, about a third the size of full-precision floats: a view of 4 heads
    over 61 tokens saves at about 40 KB instead of 95 KB, and the picture is the same.
    """

    def __init__(self, element: str, props: dict, description: str, quantised: tuple[str, ...] = ()):
        self.element, self.props, self.description, self.quantised = element, props, description, quantised

    def page_props(self) -> str:
        import torch

        props = dict(self.props)
        for key in self.quantised:
            props[key] = torch.round(torch.as_tensor(props[key], dtype=torch.float64).cpu() * 1000).long()
        return convert_props(props)

    def _repr_html_(self) -> str:
        if "google.colab" in sys.modules or install_bundle() is None:
            return self.inline()
        return _SCRIPT.format(id=f"circuits-vis-{uuid.uuid4().hex[:12]}", element=self.element,
                              props=self.page_props(), quantised=json.dumps(list(self.quantised)),
                              static_dir=STATIC_DIR_NAME, bundle=BUNDLE_NAME)

    def inline(self) -> str:
        from circuitsvis.utils.render import render_local

        return render_local(self.element, **self.props)

    def __str__(self) -> str:
        return self.inline()

    def __repr__(self) -> str:
        return f"<circuitsvis {html.escape(self.element)}: {self.description}>"


class _Inline:
    def __init__(self, view: View):
        self.view = view

    def _repr_html_(self) -> str:
        return self.view.inline()


def attention_patterns(tokens: list[str], attention, *, inline: bool = False):
    """circuitsvis' `attention.attention_patterns`: one `[head, query, key]` pattern per head."""
    n_heads = len(attention)
    view = View("AttentionPatterns", {"tokens": tokens, "attention": attention},
                f"{len(tokens)} tokens, {n_heads} heads", quantised=("attention",))
    return _Inline(view) if inline else view


def attention_heads(tokens: list[str], attention, *, inline: bool = False, **options):
    """circuitsvis' `attention.attention_heads` (options: attention_head_names, max_value, min_value...)."""
    view = View("AttentionHeads", {"tokens": tokens, "attention": attention, **options},
                f"{len(tokens)} tokens, {len(attention)} heads", quantised=("attention",))
    return _Inline(view) if inline else view
