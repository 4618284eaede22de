"""Views for notebooks: circuitsvis' attention views, and attribution graphs (Chapter 8).

circuitsvis views load circuitsvis' JavaScript once per page instead of once per output.

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

`graph_view` draws an attribution graph as SVG in Python, with a few lines of JavaScript of its
own (nothing loaded) for clicking a node; the picture and its tooltips need no JavaScript at all.

    from utils.vis import graph_view
    graph_view(graph, max_edges=300)      # graph: utils.attribution.view_data(...)
"""

from __future__ import annotations

import html
import json
import math
import operator
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


# -- attribution graphs (Chapter 8) ------------------------------------------------------------------

GRAPH_KINDS = ("embed", "feature", "error", "logit")
# Okabe and Ito's palette, told apart with every common kind of colour blindness
POSITIVE, NEGATIVE = "#0072B2", "#D55E00"
NODE_FILL = {"embed": "#009E73", "feature": "#CC79A7", "error": "#A0A0A0", "logit": "#F0E442"}
NODE_GLYPH = {"embed": "■", "feature": "●", "error": "◆", "logit": "▲"}
R_MIN, R_MAX = 3.5, 8.5                      # node radius, from no influence to the most
SLOT = 2 * R_MAX + 4                         # width a node takes beside the others in its cell
MIN_COLUMN, LEFT, TOP, BOTTOM, ROW_MIN = 56, 50, 14, 34, 24
MAX_EDGE_WIDTH = 4.0
UNTRUSTED = ("This attribution graph is drawn in SVG, which JupyterLab does not show in an untrusted notebook: "
             "run its cell again, or trust the notebook (command palette: Trust Notebook).")
STATIC_HINT = "Hover over a node for its values; where the output's script runs, click it for its card."
INTERACTIVE_HINT = "Click a node for its card and its strongest edges; click empty space to clear."


def _number(value, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{what} is {value!r}, not a finite number")
    return number


def _integer(value, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{what} is {value!r}, not an integer") from None


def check_graph(graph) -> dict:
    """The graph in the data contract's form (see `graph_view`), with numbers as floats and edges as
    (source index, target index, weight); a ValueError that names the culprit otherwise."""
    for key in ("tokens", "n_layers", "nodes", "edges"):
        if key not in graph:
            raise ValueError(f"the graph has no {key!r} (it needs tokens, n_layers, nodes and edges)")
    tokens = [str(t) for t in graph["tokens"]]
    n_layers = _integer(graph["n_layers"], "n_layers")
    rows = {"embed": (-1, -1), "feature": (0, n_layers - 1), "error": (0, n_layers - 1),
            "logit": (n_layers, n_layers)}
    nodes, index = [], {}
    for i, node in enumerate(graph["nodes"]):
        for key in ("id", "kind", "layer", "pos"):
            if key not in node:
                raise ValueError(f"node {i} ({node.get('id', 'no id')!r}) has no {key!r}")
        node_id, kind = str(node["id"]), node["kind"]
        if node_id in index:
            raise ValueError(f"node id {node_id!r} appears twice")
        if kind not in GRAPH_KINDS:
            raise ValueError(f"node {node_id!r} has kind {kind!r}; the kinds are {', '.join(GRAPH_KINDS)}")
        layer = _integer(node["layer"], f"node {node_id!r}'s layer")
        pos = _integer(node["pos"], f"node {node_id!r}'s pos")
        low, high = rows[kind]
        if not low <= layer <= high:
            where = str(low) if low == high else f"{low} to {high}"
            raise ValueError(f"node {node_id!r} ({kind}) is at layer {layer}; {kind} nodes belong at layer {where} "
                             f"(n_layers={n_layers})")
        if not 0 <= pos < len(tokens):
            raise ValueError(f"node {node_id!r} is at position {pos}, but there are {len(tokens)} tokens")
        index[node_id] = i
        nodes.append({"id": node_id, "kind": kind, "layer": layer, "pos": pos,
                      "label": str(node.get("label") or node_id),
                      "activation": _number(node.get("activation"), f"node {node_id!r}'s activation"),
                      "influence": _number(node.get("influence"), f"node {node_id!r}'s influence"),
                      "card": str(node.get("card") or "") or None})
    edges = []
    for k, edge in enumerate(graph["edges"]):
        source, target = str(edge.get("source")), str(edge.get("target"))
        for end in (source, target):
            if end not in index:
                raise ValueError(f"edge {k} ({source!r} -> {target!r}) names {end!r}, which is not a node id")
        weight = _number(edge.get("weight"), f"edge {k} ({source!r} -> {target!r})'s weight")
        if weight is None:
            raise ValueError(f"edge {k} ({source!r} -> {target!r}) has no weight")
        edges.append((index[source], index[target], weight))
    return {"tokens": tokens, "n_layers": n_layers, "title": str(graph.get("title") or ""), "nodes": nodes,
            "edges": edges}


def _row_name(layer: int, n_layers: int) -> str:
    return "emb" if layer < 0 else "logits" if layer == n_layers else f"L{layer}"


def _esc(text: str) -> str:
    """Text escaped for HTML and SVG; every string of the graph is put in text, none in an attribute."""
    return html.escape(text, quote=False)


def _short(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


class GraphView:
    """An attribution graph as SVG drawn in Python, and a short script that makes it clickable.

    The drawing needs no JavaScript, so it shows where scripts do not run (GitHub, a page with
    scripts off), each node's values in its tooltip (an SVG <title>). Where the output's script runs
    (JupyterLab and Notebook 7 for outputs of the session, Colab, nbconvert's HTML, `save`),
    clicking a node dims every edge but its own and shows its card in the side panel.

    An untrusted notebook (saved elsewhere, reopened in JupyterLab) is shown through a sanitizer
    that drops SVG but keeps the text inside it: the drawing sits in a box of font-size 0 so that
    text stays out of sight, and a note only the sanitized output shows (an HTML element inside a
    hidden <foreignObject>) says how to draw the graph.
    """

    def __init__(self, graph: dict, height: int = 560, max_edges: int | None = None):
        self.graph = check_graph(graph)
        if max_edges is not None and _integer(max_edges, "max_edges") < 0:
            raise ValueError(f"max_edges is {max_edges}; it must be None (all) or at least 0")
        self.height = max(int(height), TOP + BOTTOM + ROW_MIN * (self.graph["n_layers"] + 1))
        strongest = sorted(self.graph["edges"], key=lambda e: -abs(e[2]))
        self.edges = strongest[:max_edges] if max_edges is not None else strongest
        self.edges.reverse()    # drawn weakest first, so the strongest lie on top

    def layout(self) -> tuple[list[tuple[int, int]], list[float], list[float], list[float]]:
        """Each node's (x, y), each column's left edge and width, and each row's y (embeddings first).

        A column is as wide as its fullest cell needs (nodes of a cell sit side by side, the most
        influential on the left); rows share the height evenly, embeddings at the bottom."""
        g = self.graph
        cells: dict[tuple[int, int], list[int]] = {}
        for i, node in enumerate(g["nodes"]):
            cells.setdefault((node["layer"], node["pos"]), []).append(i)
        fullest = [0] * len(g["tokens"])
        for (_, pos), members in cells.items():
            fullest[pos] = max(fullest[pos], len(members))
        widths = [max(MIN_COLUMN, n * SLOT + 8) for n in fullest]
        lefts = [LEFT + sum(widths[:p]) for p in range(len(widths))]
        n_rows = g["n_layers"] + 2
        step = (self.height - TOP - BOTTOM) / (n_rows - 1)
        row_y = [self.height - BOTTOM - r * step for r in range(n_rows)]
        xy = [(0, 0)] * len(g["nodes"])
        for (layer, pos), members in cells.items():
            members.sort(key=lambda i: -abs(g["nodes"][i]["influence"] or 0.0))
            centre = lefts[pos] + widths[pos] / 2
            for k, i in enumerate(members):
                xy[i] = (round(centre + (k - (len(members) - 1) / 2) * SLOT), round(row_y[layer + 1]))
        return xy, lefts, widths, row_y

    def svg(self) -> str:
        """The picture, complete without JavaScript: presentation attributes rather than CSS (a stylesheet
        may be stripped where the SVG is kept), edges under nodes, a <title> on each for its tooltip."""
        g = self.graph
        nodes, tokens = g["nodes"], g["tokens"]
        xy, lefts, widths, row_y = self.layout()
        width = round(lefts[-1] + widths[-1] + 8) if tokens else LEFT + MIN_COLUMN
        height = self.height
        top_influence = max((abs(n["influence"] or 0.0) for n in nodes), default=0.0) or 1.0
        top_weight = max((abs(w) for _, _, w in self.edges), default=0.0) or 1.0
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
               f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" '
               f'style="display:block;max-width:none">',
               f'<foreignObject display="none" width="0" height="0"><div style="font-size:13px;color:#a00">'
               f'{_esc(UNTRUSTED)}</div></foreignObject>',
               '<g stroke="#e6e6e6">']
        out += [f'<path d="M{LEFT - 4} {y:.0f}H{width - 4}"/>' for y in row_y]
        out.append('</g><g fill="#666" text-anchor="end">')
        out += [f'<text x="{LEFT - 8}" y="{y + 4:.0f}">{_row_name(r - 1, g["n_layers"])}</text>'
                for r, y in enumerate(row_y)]
        out.append('</g><g text-anchor="middle">')
        for pos, token in enumerate(tokens):
            x = lefts[pos] + widths[pos] / 2
            room = max(3, int(widths[pos] / 6.5))
            shown = token.strip() or repr(token)
            shown = shown if len(shown) <= room else shown[:room - 1] + "…"
            out.append(f'<text x="{x:.0f}" y="{height - BOTTOM + 20}">{_esc(shown)}<title>{_esc(repr(token))}</title>'
                       f'</text><text x="{x:.0f}" y="{height - BOTTOM + 31}" fill="#999" font-size="9">{pos}</text>')
        out.append('</g><g class="ag-edges" fill="none" stroke-opacity="0.75">')
        for s, t, w in self.edges:
            (sx, sy), (tx, ty) = xy[s], xy[t]
            bend = sy - 30 if sy == ty else (sy + ty) / 2   # an edge within a row arcs above it
            title = f'{nodes[s]["label"]} → {nodes[t]["label"]}: {w:+.3g}'
            out.append(f'<path d="M{sx} {sy}C{sx} {bend:.0f} {tx} {bend:.0f} {tx} {ty}" '
                       f'stroke="{POSITIVE if w > 0 else NEGATIVE}" '
                       f'stroke-width="{0.4 + (MAX_EDGE_WIDTH - 0.4) * abs(w) / top_weight:.2g}">'
                       f'<title>{_esc(title)}</title></path>')
        out.append('</g><g class="ag-nodes" stroke="#333" stroke-width="0.8">')
        for node, (x, y) in zip(nodes, xy):
            r = R_MIN + (R_MAX - R_MIN) * (abs(node["influence"] or 0.0) / top_influence) ** 0.5
            token = tokens[node["pos"]]
            title = (f'{node["label"]}\n{node["kind"]} {node["id"]} · {_row_name(node["layer"], g["n_layers"])} · '
                     f'position {node["pos"]} {token!r}\n'
                     f'activation {_short(node["activation"])} · influence {_short(node["influence"])}')
            tag, geometry = _shape(node["kind"], x, y, r)
            out.append(f'<{tag} {geometry} fill="{NODE_FILL[node["kind"]]}"><title>{_esc(title)}</title></{tag}>')
        out.append('</g></svg>')
        return "".join(out)

    def data(self) -> str:
        """What the script needs, as a JavaScript literal in the order of the SVG's nodes and edges
        (`<` written as \\u003c, so no string can close the <script>)."""
        g = self.graph

        def short(x: float | None) -> float | None:
            return None if x is None else float(f"{x:.4g}")

        nodes = [[n["id"], n["label"], n["kind"], n["layer"], n["pos"], short(n["activation"]),
                  short(n["influence"]), n["card"]] for n in g["nodes"]]
        edges = [[s, t, short(w)] for s, t, w in self.edges]
        text = json.dumps({"tokens": g["tokens"], "n_layers": g["n_layers"], "nodes": nodes, "edges": edges,
                           "colours": [POSITIVE, NEGATIVE], "hint": INTERACTIVE_HINT},
                          ensure_ascii=False, separators=(",", ":"))
        return text.replace("<", "\\u003c")

    def html(self, uid: str | None = None) -> str:
        """The output: caption, drawing, legend, side panel and script; ids unique to this output."""
        uid = uid or f"attribution-graph-{uuid.uuid4().hex[:12]}"
        legend = " ".join(
            [f'<span style="color:{POSITIVE}">━</span> positive edge', f'<span style="color:{NEGATIVE}">━</span> '
             'negative edge (width ∝ |weight|) &nbsp;'] +
            [f'<span style="color:{NODE_FILL[k]}">{NODE_GLYPH[k]}</span> {k}' for k in GRAPH_KINDS] +
            ['&nbsp;(size ∝ influence)'])
        caption = (f'<div style="font-weight:600;margin-bottom:4px">{_esc(self.graph["title"])}</div>'
                   if self.graph["title"] else "")
        return (f'<div id="{uid}" class="attribution-graph" style="display:flex;gap:12px;'
                f'align-items:flex-start;background:#fff;color:#222;font:12px sans-serif;padding:6px">'
                f'<div style="flex:0 1 auto;min-width:0">{caption}'
                f'<div style="overflow-x:auto;font-size:0">{self.svg()}</div>'
                f'<div style="color:#444;margin-top:4px">{legend}</div></div>'
                f'<div class="ag-panel" style="flex:0 0 280px;max-height:{self.height}px;'
                f'overflow:auto;border-left:1px solid #ddd;padding-left:10px;line-height:1.45">'
                f'<div style="color:#666">{_esc(STATIC_HINT)}</div></div>'
                f'<script>{_GRAPH_SCRIPT.replace("__ID__", uid).replace("__DATA__", self.data())}</script></div>')

    def _repr_html_(self) -> str:
        return self.html()

    def __str__(self) -> str:
        """A standalone HTML page of the view."""
        title = _esc(self.graph["title"] or "attribution graph")
        return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
                f'<body>{self.html()}</body></html>\n')

    def save(self, path: str | Path) -> Path:
        """Write the view as a standalone HTML page (it needs no network)."""
        path = Path(path)
        path.write_text(str(self), encoding="utf-8")
        return path

    def __repr__(self) -> str:
        g = self.graph
        return (f"<attribution graph: {len(g['tokens'])} tokens, {len(g['nodes'])} nodes, "
                f"{len(self.edges)} of {len(g['edges'])} edges>")


def _shape(kind: str, x: int, y: int, r: float) -> tuple[str, str]:
    """The SVG tag and geometry of one node: embeddings squares, features circles, error nodes
    diamonds, logits triangles."""
    if kind == "feature":
        return "circle", f'cx="{x}" cy="{y}" r="{r:.1f}"'
    if kind == "embed":
        return "rect", f'x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}"'
    d = r * 1.25
    if kind == "error":
        return "path", f'd="M{x} {y - d:.1f}L{x + d:.1f} {y}L{x} {y + d:.1f}L{x - d:.1f} {y}Z"'
    return "path", f'd="M{x} {y - d:.1f}L{x + d:.1f} {y + 0.7 * d:.1f}L{x - d:.1f} {y + 0.7 * d:.1f}Z"'


# Runs where the output's scripts run. The drawing is already there; this only adds clicking.
_GRAPH_SCRIPT = """(() => {
const root = document.currentScript?.closest(".attribution-graph") ?? document.getElementById("__ID__");
const G = __DATA__;
const svg = root.querySelector("svg"), panel = root.querySelector(".ag-panel");
const nodes = [...svg.querySelectorAll(".ag-nodes > *")], edges = [...svg.querySelectorAll(".ag-edges > *")];
const inputs = G.nodes.map(() => []), outputs = G.nodes.map(() => []);
G.edges.forEach(([s, t], k) => { outputs[s].push(k); inputs[t].push(k); });
const me = "#" + root.id, style = document.createElement("style");
style.textContent = `${me} .ag-nodes>*{cursor:pointer} ${me}.ag-sel .ag-edges>*{stroke-opacity:.07} `
  + `${me}.ag-sel .ag-edges>.ag-on{stroke-opacity:1} ${me}.ag-sel .ag-nodes>*{opacity:.25} `
  + `${me}.ag-sel .ag-nodes>.ag-on{opacity:1} ${me} .ag-nodes>.ag-cur{stroke:#000;stroke-width:2.5px}`;
root.append(style);
const num = (x) => x === null ? "–" : String(+x.toPrecision(3));
const row = (layer) => layer < 0 ? "emb" : layer === G.n_layers ? "logits" : "L" + layer;
const add = (parent, tag, text, css) => {
  const el = parent.appendChild(document.createElement(tag));
  if (text !== undefined) el.textContent = text;
  if (css) el.style.cssText = css;
  return el;
};
function clear() {
  root.classList.remove("ag-sel");
  for (const el of [...nodes, ...edges]) el.classList.remove("ag-on", "ag-cur");
  panel.replaceChildren();
  add(panel, "div", G.hint, "color:#666");
}
function strongest(title, list, end, arrow) {
  add(panel, "div", title, "margin-top:8px;font-weight:600");
  const ranked = list.slice().sort((a, b) => Math.abs(G.edges[b][2]) - Math.abs(G.edges[a][2])).slice(0, 8);
  if (!ranked.length) add(panel, "div", "none drawn", "color:#666");
  for (const k of ranked) {
    const w = G.edges[k][2], other = G.edges[k][end];
    add(panel, "div", `${w > 0 ? "+" : ""}${num(w)} ${arrow} ${G.nodes[other][1]}`,
        `cursor:pointer;color:${w > 0 ? G.colours[0] : G.colours[1]}`).addEventListener("click", () => select(other));
  }
}
function select(i) {
  clear();
  const [id, label, kind, layer, pos, activation, influence, card] = G.nodes[i];
  root.classList.add("ag-sel");
  nodes[i].classList.add("ag-on", "ag-cur");
  for (const k of [...inputs[i], ...outputs[i]]) {
    edges[k].classList.add("ag-on");
    nodes[G.edges[k][0]].classList.add("ag-on");
    nodes[G.edges[k][1]].classList.add("ag-on");
  }
  panel.replaceChildren();
  add(panel, "div", label, "font-weight:600;font-size:13px");
  add(panel, "div", `${kind} ${id} · ${row(layer)} · position ${pos} ${JSON.stringify(G.tokens[pos])}`, "color:#555");
  add(panel, "div", `activation ${num(activation)} · influence ${num(influence)}`, "color:#555");
  if (card) add(panel, "div", undefined, "margin-top:8px").innerHTML = card;
  strongest("Strongest inputs", inputs[i], 0, "←");
  strongest("Strongest outputs", outputs[i], 1, "→");
}
svg.addEventListener("click", (event) => {
  const node = event.target.closest(".ag-nodes > *");
  if (node) select(nodes.indexOf(node)); else clear();
});
clear();
})();"""


def graph_view(graph: dict, *, height: int = 560, max_edges: int | None = None) -> GraphView:
    """An attribution graph (the form `utils.attribution.view_data` returns), drawn by layer and position.

        {"tokens": [...], "n_layers": 4, "title": "...",
         "nodes": [{"id", "kind": "embed"|"feature"|"error"|"logit", "layer", "pos",
                    "label", "activation", "influence", "card": "<html>"}, ...],
         "edges": [{"source": id, "target": id, "weight": signed float}, ...]}

    Rows from the bottom: embeddings (layer -1), layers 0..n_layers-1 (features and error nodes),
    logits (layer n_layers); one column per token. Edge width is |weight| over the largest drawn;
    `max_edges` keeps only the strongest. A node's `card` is HTML shown as it is (escape what you
    put in it); every other string is escaped here.
    """
    return GraphView(graph, height=height, max_edges=max_edges)
