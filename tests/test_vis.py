"""utils.vis: circuitsvis views that keep circuitsvis' bundle out of every output; attribution-graph views."""

import random
import re
import xml.etree.ElementTree as ET

import pytest
import torch

from utils import vis


def test_a_view_holds_its_data_not_the_bundle(tmp_path, monkeypatch):
    monkeypatch.setattr(vis, "static_dirs", lambda: [tmp_path / "static"])
    pattern = torch.softmax(torch.randn(4, 61, 61), dim=-1)
    html = vis.attention_patterns([f"t{i}" for i in range(61)], pattern)._repr_html_()
    bundle = (tmp_path / "static" / vis.BUNDLE_NAME)
    assert bundle.exists() and bundle.stat().st_size > 1_000_000, "the bundle is copied where JupyterLab serves it"
    assert "sourceMappingURL" not in bundle.read_text()
    assert len(html) < 80_000 and "var CircuitsVis" not in html
    assert f"/{vis.STATIC_DIR_NAME}/{vis.BUNDLE_NAME}" in html and "CV.AttentionPatterns" in html
    assert "unpkg.com" not in html
    # attention travels in thousandths, rounded
    assert str(round(pattern[0, 1, 0].item() * 1000)) in html


def test_inline_and_colab_fall_back_to_circuitsvis_own_output(monkeypatch, tmp_path):
    monkeypatch.setattr(vis, "static_dirs", lambda: [tmp_path / "static"])
    pattern = torch.softmax(torch.randn(2, 3, 3), dim=-1)
    assert "var CircuitsVis" in vis.attention_patterns(["a", "b", "c"], pattern, inline=True)._repr_html_()
    monkeypatch.setitem(__import__("sys").modules, "google.colab", object())
    assert "var CircuitsVis" in vis.attention_patterns(["a", "b", "c"], pattern)._repr_html_()


def test_no_writable_place_falls_back_to_inline(monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setattr(vis, "static_dirs", lambda: [blocked / "static"])
    assert "var CircuitsVis" in vis.attention_heads(["a", "b"], torch.ones(1, 2, 2) / 2)._repr_html_()


# -- attribution graphs ------------------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"


def small_graph() -> dict:
    """Two layers over three tokens; a label and a token that would be markup if not escaped."""
    nodes = [{"id": f"e{p}", "kind": "embed", "layer": -1, "pos": p, "label": f"emb {p}", "activation": 1.0,
              "influence": 0.1} for p in range(3)]
    nodes += [
        {"id": "f0.1.7", "kind": "feature", "layer": 0, "pos": 1, "label": "<script>alert(1)</script>",
         "activation": 2.0, "influence": 0.9, "card": "<b>top examples</b></script><i>not closed</i>"},
        {"id": "f0.1.9", "kind": "feature", "layer": 0, "pos": 1, "label": "A & B", "activation": 1.0,
         "influence": 0.2},
        {"id": "x1.2", "kind": "error", "layer": 1, "pos": 2, "label": "error", "activation": 0.0, "influence": 0.05},
        {"id": "l0", "kind": "logit", "layer": 2, "pos": 2, "label": "' Paris'", "activation": 0.7, "influence": 1.0},
    ]
    edges = [("e1", "f0.1.7", 0.8), ("e1", "f0.1.9", -0.3), ("f0.1.7", "l0", 1.5), ("f0.1.9", "l0", -0.05),
             ("x1.2", "l0", 0.2), ("e2", "x1.2", 0.1)]
    return {"tokens": ["<bos>", "Ada", "lives"], "n_layers": 2, "title": "Ada <lives>", "nodes": nodes,
            "edges": [{"source": s, "target": t, "weight": w} for s, t, w in edges]}


def drawing(html: str) -> ET.Element:
    """The view's SVG, parsed as XML (so it is also well formed)."""
    return ET.fromstring(re.search(r"<svg .*?</svg>", html, re.S).group(0))


def group(svg: ET.Element, name: str) -> list[ET.Element]:
    return list(svg.find(f".//{SVG}g[@class='{name}']"))


def test_a_graph_draws_one_element_per_node_and_edge_with_a_tooltip():
    graph = small_graph()
    svg = drawing(vis.graph_view(graph)._repr_html_())
    nodes, edges = group(svg, "ag-nodes"), group(svg, "ag-edges")
    assert len(nodes) == len(graph["nodes"]) and len(edges) == len(graph["edges"])
    assert [n.tag for n in nodes] == [f"{SVG}rect"] * 3 + [f"{SVG}circle"] * 2 + [f"{SVG}path"] * 2
    assert {n.get("fill") for n in nodes} == set(vis.NODE_FILL.values())
    tooltip = nodes[3].find(f"{SVG}title").text
    assert "<script>alert(1)</script>" in tooltip and "activation 2" in tooltip and "influence 0.9" in tooltip
    colours = {e.find(f"{SVG}title").text.rsplit(": ", 1)[1][0]: e.get("stroke") for e in edges}
    assert colours == {"+": vis.POSITIVE, "-": vis.NEGATIVE}
    widths = [float(e.get("stroke-width")) for e in edges]
    assert widths == sorted(widths) and widths[-1] == vis.MAX_EDGE_WIDTH   # strongest on top, widest


def test_layout_rows_by_layer_columns_by_position():
    view = vis.graph_view(small_graph())
    xy, lefts, widths, _ = view.layout()
    at = {node["id"]: xy[i] for i, node in enumerate(view.graph["nodes"])}
    assert at["e0"][1] > at["f0.1.7"][1] > at["x1.2"][1] > at["l0"][1]          # embeddings bottom, logits top
    assert at["e0"][0] < at["e1"][0] < at["e2"][0]
    assert at["f0.1.7"][1] == at["f0.1.9"][1] and at["f0.1.7"][0] < at["f0.1.9"][0]  # side by side, strongest left
    assert all(lefts[1] <= at[n][0] <= lefts[1] + widths[1] for n in ("e1", "f0.1.7", "f0.1.9"))


def test_every_string_is_escaped_and_no_string_closes_the_script():
    html = vis.graph_view(small_graph())._repr_html_()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;bos&gt;" in html and "A &amp; B" in html and "Ada &lt;lives&gt;" in html
    assert html.count("<script>") == 1 and html.count("</script>") == 1, "the card's </script> is escaped"
    assert "\\u003cb>top examples" in html        # the card travels to the script as data


def test_ids_are_unique_per_output():
    view = vis.graph_view(small_graph())
    outputs = [view._repr_html_(), view._repr_html_(), vis.graph_view(small_graph())._repr_html_()]
    ids = [i for html in outputs for i in re.findall(r'\bid="([^"]+)"', html)]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(f'getElementById("{i}")' in html for i, html in zip(ids, outputs))


def test_max_edges_keeps_the_strongest():
    svg = drawing(vis.graph_view(small_graph(), max_edges=3)._repr_html_())
    kept = sorted(e.find(f"{SVG}title").text.rsplit(": ", 1)[1] for e in group(svg, "ag-edges"))
    assert kept == ["+0.8", "+1.5", "-0.3"]
    assert len(group(drawing(vis.graph_view(small_graph(), max_edges=0)._repr_html_()), "ag-edges")) == 0


@pytest.mark.parametrize("break_it, message", [
    (lambda g: g["edges"].append({"source": "e0", "target": "f9.9.9", "weight": 1.0}),
     "'f9.9.9', which is not a node id"),
    (lambda g: g["nodes"].append(dict(g["nodes"][0])), "node id 'e0' appears twice"),
    (lambda g: g["nodes"][3].update(layer=2), r"'f0.1.7' \(feature\) is at layer 2"),
    (lambda g: g["nodes"][0].update(pos=3), "at position 3, but there are 3 tokens"),
    (lambda g: g["nodes"][0].update(kind="attention"), "kind 'attention'"),
    (lambda g: g["edges"][0].update(weight=float("nan")), "not a finite number"),
    (lambda g: g.pop("edges"), "no 'edges'"),
])
def test_malformed_graphs_say_what_is_wrong(break_it, message):
    graph = small_graph()
    break_it(graph)
    with pytest.raises(ValueError, match=message):
        vis.graph_view(graph)


def test_a_150_node_600_edge_graph_stays_small_and_saves_as_a_page(tmp_path):
    rng = random.Random(0)
    tokens = [f"tok{i}" for i in range(10)]
    nodes = [{"id": f"n{i}", "kind": "feature", "layer": rng.randrange(4), "pos": rng.randrange(10),
              "label": f"L? feature {i}", "activation": rng.random(), "influence": rng.random()} for i in range(150)]
    edges = [{"source": f"n{rng.randrange(150)}", "target": f"n{rng.randrange(150)}", "weight": rng.gauss(0, 1)}
             for _ in range(600)]
    view = vis.graph_view({"tokens": tokens, "n_layers": 4, "nodes": nodes, "edges": edges})
    assert len(view._repr_html_().encode()) < 200_000
    page = view.save(tmp_path / "graph.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg ") == 1 and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")
    assert repr(view) == "<attribution graph: 10 tokens, 150 nodes, 600 of 600 edges>"
