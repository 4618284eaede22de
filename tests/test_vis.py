"""utils.vis: circuitsvis views that keep circuitsvis' bundle out of every output."""

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
