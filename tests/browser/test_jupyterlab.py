"""The course in a real browser: JupyterLab on a temporary copy of chapters/, driven by Playwright.

Needs Debian's Chromium (`apt-get install -y chromium`) and Playwright for Python (`pip install
playwright`; its own browser download is not used). Without them the tests are skipped with that
advice, except where COURSE_BROWSER_REQUIRED=1 (CI sets it): then they fail. Screenshots of every
step go to test-artifacts/browser/ (COURSE_ARTIFACTS moves the folder).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("COURSE_ARTIFACTS", ROOT / "test-artifacts")) / "browser"
INSTALL = "apt-get install -y chromium && .venv/bin/python -m pip install playwright"
BUILD = "chapters/ch1_transformer_math/build_a_transformer.ipynb"
CIRCUITS = "chapters/ch1_transformer_math/circuits_and_induction.ipynb"
# the text a widget shows when no widget manager draws it (its text/plain repr)
WIDGET_AS_TEXT = re.compile(r"^(VBox|HBox|Button|HTML|Output|interactive|Dropdown|IntSlider)\(", re.M)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed"
    if not CHROMIUM.exists():
        return f"Chromium is not at {CHROMIUM}"
    return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab (course configuration: utils/jupyter_config) serving a copy of chapters/."""
    if reason := _missing():
        message = f"{reason}; install both with: {INSTALL}"
        if os.environ.get("COURSE_BROWSER_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "chapters", root / "chapters", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JUPYTER_CONFIG_PATH": str(ROOT / "utils" / "jupyter_config"),
           "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces")}
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--ServerApp.port={port}",
         "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
         f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"JupyterLab did not start:\n{(root / 'server.log').read_text()}")
                time.sleep(0.5)
        yield {"url": f"http://127.0.0.1:{port}", "root": root}
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "server.log", ARTIFACTS / "server.log")


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.errors = []
        pg.on("pageerror", lambda exc: pg.errors.append(f"uncaught: {exc}"))
        pg.on("console", lambda msg: pg.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        pg.set_default_timeout(60_000)
        pg.goto(f"{lab['url']}/lab/workspaces/browser-test/tree/chapters/index.ipynb?reset")
        pg.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                             " && window.jupyterapp.shell.currentWidget.context")
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


CURRENT = "window.jupyterapp.shell.currentWidget"


def wait_ready(page, path: str) -> None:
    """Wait until `path` is the current tab, loaded, with an idle kernel."""
    page.wait_for_function(
        f"""(path) => {{ const w = {CURRENT};
            return w && w.context && w.context.path === path && w.context.isReady && w.sessionContext.session
                && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }}""",
        arg=path, timeout=120_000)


def dirty(page) -> bool:
    return page.evaluate(f"() => {CURRENT}.context.model.dirty")


def cell_index(page, needle: str) -> int:
    """The index of the first cell whose source contains `needle`."""
    i = page.evaluate(f"""(needle) => {CURRENT}.content.widgets.findIndex(
        c => c.model.sharedModel.getSource().includes(needle))""", needle)
    assert i >= 0, f"no cell contains {needle!r}"
    return i


def run_cells(page, first: int, last: int) -> None:
    """Run cells first..last (inclusive) one by one, as shift-enter would, and wait for each."""
    page.evaluate(f"""async ([first, last]) => {{
        const app = window.jupyterapp, nb = {CURRENT}.content;
        for (let i = first; i <= last; i++) {{
            nb.activeCellIndex = i;
            nb.deselectAll();
            await app.commands.execute('notebook:run-cell');
        }} }}""", [first, last])


def set_source(page, index: int, source: str) -> None:
    page.evaluate(f"([i, s]) => {CURRENT}.content.widgets[i].model.sharedModel.setSource(s)", [index, source])


def output_text(page, index: int) -> str:
    return page.evaluate(f"(i) => {CURRENT}.content.widgets[i].outputArea.node.innerText", index)


def output_locator(page, index: int):
    page.evaluate(f"(i) => {CURRENT}.content.widgets[i].node.setAttribute('data-course-test', String(i))", index)
    return page.locator(f"[data-course-test='{index}'] .jp-OutputArea").first


def scroll_to(page, index: int) -> None:
    page.evaluate(f"(i) => {CURRENT}.content.widgets[i].node.scrollIntoView({{block: 'center'}})", index)


# JupyterLab's debugger asks every new kernel for its state; a kernel shut down before it answers (open_notebook
# shuts the earlier notebooks' kernels down) cancels the request, which the debugger logs as an error
NOT_THE_COURSE = ("Could not restore the debugger state",)


def course_errors(page) -> list[str]:
    """JavaScript errors and resources that failed to load (offline, a remote image would be one)."""
    return [e for e in page.errors if not any(text in e for text in NOT_THE_COURSE)]


def test_index_opens_and_its_links_open_notebooks(page):
    wait_ready(page, "chapters/index.ipynb")
    page.wait_for_selector(".jp-RenderedMarkdown a[href*='build_a_transformer.ipynb']")
    shot(page, "01-index")
    assert not page.locator("text=Nbgrader").count(), "nbgrader's JupyterLab extension is active"
    page.locator(".jp-RenderedMarkdown a[href*='build_a_transformer.ipynb']").first.click()
    wait_ready(page, BUILD)
    shot(page, "02-index-link-opened")


def test_a_notebook_opens_unmodified(page):
    wait_ready(page, BUILD)
    time.sleep(2)  # JupyterLab writes the kernel's metadata just after the kernel starts
    assert not dirty(page), "opening the notebook marked it modified (see utils.notebooks.pipeline.as_jupyterlab_saves)"
    shot(page, "03-opened-unmodified")


def test_an_untouched_stub_says_not_attempted(page):
    stub = cell_index(page, "def layer_norm(")
    run_cells(page, 0, stub - 1)          # the set-up cells and everything before the exercise
    check = cell_index(page, "check(layer_norm)")
    run_cells(page, stub, check)
    text = output_text(page, check)
    scroll_to(page, check)
    shot(page, "04-stub-not-attempted")
    assert "not attempted" in text.lower(), text
    assert "Traceback" not in text, text


def test_a_wrong_layer_norm_shows_failure_hint_and_hint_button(page):
    stub, check = cell_index(page, "def layer_norm("), cell_index(page, "check(layer_norm)")
    set_source(page, stub, "def layer_norm(x, w, b, eps=1e-5):\n"
                           "    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * w + b\n")
    run_cells(page, stub, check)
    scroll_to(page, check)
    out = output_locator(page, check)
    button = out.get_by_role("button", name=re.compile("hint", re.I))
    try:
        button.wait_for()
    finally:
        shot(page, "05-wrong-layer-norm")
    text = output_text(page, check)
    scroll_to(page, check)
    shot(page, "05-wrong-layer-norm")
    assert "Traceback" not in text, text
    assert not WIDGET_AS_TEXT.search(text), f"a widget rendered as text:\n{text}"
    failed = re.search(r"✗|fail", text, re.I)
    targeted = text.find("biased variance")
    shown = button.inner_text()
    assert failed and targeted > failed.start(), text
    assert text.find(shown) > targeted, f"the hint button should come after the hint:\n{text}"
    button.click()
    page.wait_for_function(f"([i, before]) => {CURRENT}.content.widgets[i].outputArea.node.innerText.length > before",
                           arg=[check, len(text)])
    shot(page, "06-hint-revealed")
    assert output_text(page, check) != text


def test_a_correct_layer_norm_passes(page):
    stub, check = cell_index(page, "def layer_norm("), cell_index(page, "check(layer_norm)")
    set_source(page, stub, "def layer_norm(x, w, b, eps=1e-5):\n"
                           "    centred = x - x.mean(dim=-1, keepdim=True)\n"
                           "    return centred / torch.sqrt(centred.pow(2).mean(dim=-1, keepdim=True) + eps) * w + b\n")
    run_cells(page, stub, check)
    text = output_text(page, check)
    scroll_to(page, check)
    shot(page, "07-correct-layer-norm")
    assert "✓" in text or "passed" in text.lower(), text
    assert "Traceback" not in text, text
    assert not course_errors(page), course_errors(page)


def test_attention_views_and_plotly_render_and_the_saved_notebook_stays_small(page, lab):
    page.evaluate("async (path) => { await window.jupyterapp.commands.execute('docmanager:open', {path}); }", CIRCUITS)
    wait_ready(page, CIRCUITS)
    second_view = cell_index(page, "attention_vis[1]")
    from utils.notebooks.pipeline import solved_notebook

    solved = solved_notebook(ROOT / CIRCUITS)   # the exercises before the views, answered
    for i in range(second_view):
        if solved.cells[i].source != page.evaluate(f"(i) => {CURRENT}.content.widgets[i].model.sharedModel.getSource()", i):
            set_source(page, i, solved.cells[i].source)
    run_cells(page, 0, second_view)
    views = page.locator("[id^='circuits-vis-']")
    assert views.count() == 2
    for i in range(2):
        views.nth(i).locator("*").first.wait_for()   # circuitsvis drew something into its placeholder
    first_view = cell_index(page, "attention_vis = {")
    scroll_to(page, first_view)
    shot(page, "08-attention-view")
    plot_cell = cell_index(page, "per_position = -log_probs")
    scroll_to(page, plot_cell)
    try:
        output_locator(page, plot_cell).locator(".js-plotly-plot").wait_for()
    finally:
        shot(page, "09-plotly")
    text = page.evaluate(f"() => {CURRENT}.content.node.innerText")
    assert "not drawn" not in text, "a circuitsvis view could not load its bundle"
    assert not WIDGET_AS_TEXT.search(text)
    assert not course_errors(page), course_errors(page)
    page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
    page.wait_for_function(f"() => !{CURRENT}.context.model.dirty")
    size = (lab["root"] / CIRCUITS).stat().st_size
    shutil.copy(lab["root"] / CIRCUITS, ARTIFACTS / "circuits_and_induction.saved.ipynb")
    assert size < 300_000, f"the saved notebook is {size} bytes"


# -- 6.1 and 7.1: an exercise's feedback and a plotly figure each, on the same server and page ---------------

CH6 = "chapters/ch6_linear_representations/linear_representations.ipynb"
CH7 = "chapters/ch7_circuit_discovery/circuit_discovery.ipynb"
# train_probe made quick (5 Adam steps): the test checks that 6.1's probe figure draws, not what it shows
QUICK_TRAIN_PROBE = '''from utils.grading import use_reference

_train_probe = use_reference("train_probe")


def train_probe(resid, labels, n_classes=3, steps=100, lr=0.1):
    return _train_probe(resid, labels, n_classes, steps=5, lr=lr)
'''


def open_notebook(page, path: str) -> None:
    """Open `path` in a fresh kernel, then shut the other notebooks' kernels down (their tests are done; a
    kernel shut down while its notebook is the current tab can cancel the debugger's requests, an error)."""
    page.evaluate("async (path) => { await window.jupyterapp.commands.execute('docmanager:open', {path}); }", path)
    wait_ready(page, path)
    page.evaluate("""async (path) => { const sessions = window.jupyterapp.serviceManager.sessions;
        for (const s of Array.from(sessions.running())) { if (s.path !== path) await sessions.shutdown(s.id); } }""",
                  path)


def solve_up_to(page, path: str, last: int, replace: dict[str, str] | None = None, skip: tuple[str, ...] = (),
                edit: tuple[str, str] | None = None) -> None:
    """Give cells 0..last the solved notebook's sources (a stub defining a name in `replace` gets that source
    instead; `edit` is a (regex, replacement) for a lighter workload), then run them, all but the checks
    (graded elsewhere) and cells containing a `skip` string (work the figure does not need)."""
    from utils.notebooks.pipeline import solved_notebook

    solved = solved_notebook(ROOT / path)
    run = []
    for i in range(last + 1):
        source = solved.cells[i].source
        for name, other in (replace or {}).items():
            if source.startswith(f"def {name}("):
                source = other
        if edit:
            source = re.sub(edit[0], edit[1], source)
        if source != page.evaluate(f"(i) => {CURRENT}.content.widgets[i].model.sharedModel.getSource()", i):
            set_source(page, i, source)
        if solved.cells[i].cell_type == "code" and not source.startswith("check(") and not any(
                needle in source for needle in skip):
            run.append(i)
    page.evaluate(f"""async (cells) => {{
        const app = window.jupyterapp, nb = {CURRENT}.content;
        for (const i of cells) {{
            nb.activeCellIndex = i;
            nb.deselectAll();
            await app.commands.execute('notebook:run-cell');
        }} }}""", run)


def wrong_then_right(page, name: str, wrong: str, targeted: str, label: str, attempts: int = 1) -> None:
    """A wrong `name` fails with its targeted diagnosis above a working hint button (each of `attempts` times:
    a rerun replaces the button, without widget errors), and the solved version then passes."""
    from utils.notebooks.pipeline import solved_notebook

    path = page.evaluate(f"() => {CURRENT}.context.path")
    stub, check = cell_index(page, f"def {name}("), cell_index(page, f"check({name})")
    right = solved_notebook(ROOT / path).cells[stub].source
    set_source(page, stub, wrong)
    for attempt in range(1, attempts + 1):
        run_cells(page, stub, check)
        button = output_locator(page, check).get_by_role("button", name=re.compile("hint", re.I))
        try:
            button.wait_for()
        finally:
            scroll_to(page, check)
            shot(page, f"{label}-wrong-{attempt}")
        text = output_text(page, check)
        assert "Traceback" not in text and not WIDGET_AS_TEXT.search(text), text
        assert targeted in text and text.find(button.inner_text()) > text.find(targeted), text
        assert button.count() == 1, "one hint button per failed check"
    button.click()
    page.wait_for_function(f"([i, before]) => {CURRENT}.content.widgets[i].outputArea.node.innerText.length > before",
                           arg=[check, len(text)])
    shot(page, f"{label}-hint-revealed")
    set_source(page, stub, right)
    run_cells(page, stub, check)
    text = output_text(page, check)
    assert "✓" in text and "Traceback" not in text, text
    assert not course_errors(page), course_errors(page)


def plotly_drawn(page, needle: str, label: str) -> None:
    """The figure of the cell containing `needle` draws, with no legend titled 'variable' (plotly express's
    default when a wide frame's columns are not named)."""
    cell = cell_index(page, needle)
    scroll_to(page, cell)
    figure = output_locator(page, cell).locator(".js-plotly-plot").first
    try:
        figure.wait_for()
    finally:
        shot(page, f"{label}-plotly")
    titles = figure.locator(".legendtitletext").all_text_contents()
    assert "variable" not in [t.strip() for t in titles], titles
    assert not WIDGET_AS_TEXT.search(output_text(page, cell)), output_text(page, cell)
    assert not course_errors(page), course_errors(page)


def test_6_1_feedback_hint_and_probe_figure(page):
    open_notebook(page, CH6)
    stub = cell_index(page, "def to_mine_theirs(")
    run_cells(page, 0, stub - 1)
    wrong_then_right(page, "to_mine_theirs", "def to_mine_theirs(boards):\n    return -boards\n",
                     "The player to move alternates", "10-ch6", attempts=2)
    solve_up_to(page, CH6, cell_index(page, "training probes"), replace={"train_probe": QUICK_TRAIN_PROBE},
                skip=("heldout = othello.random_games(",))  # the legal-move rate on 2000 games
    plotly_drawn(page, "training probes", "11-ch6")


def test_7_1_feedback_hint_and_acdc_figure(page):
    open_notebook(page, CH7)
    stub = cell_index(page, "def graph_edges(")
    run_cells(page, 0, stub - 1)
    wrong = ("def graph_edges(n_layers, n_heads, mlps):\n"
             "    senders, edges = [], []\n"
             "    for layer in range(n_layers):\n"
             "        heads = [f'a{layer}.{h}' for h in range(n_heads)]\n"
             "        edges += [(s, f'{head}.{x}') for head in heads for x in 'qkv' for s in senders]\n"
             "        senders += heads\n"
             "        if mlps:\n"
             "            edges += [(s, f'm{layer}') for s in senders]\n"
             "            senders.append(f'm{layer}')\n"
             "    return edges + [(s, 'logits') for s in senders]\n")
    wrong_then_right(page, "graph_edges", wrong, "The embedding ('embed') is the first sender", "12-ch7")
    solve_up_to(page, CH7, cell_index(page, "ACDC_THRESHOLDS = "),
                edit=(r"ACDC_THRESHOLDS = \[[^\]]*\]", "ACDC_THRESHOLDS = [0.1, 1.0]"))  # a sweep of two
    plotly_drawn(page, "ACDC_THRESHOLDS = ", "13-ch7")


# -- Chapter 8's attribution-graph view, in a scratch notebook of the lab's temporary folder -----------------

GRAPH_NOTEBOOK = "scratch_graph_view.ipynb"   # beside the lab's copy of chapters/, never in the repository
CARD_TEXT = "fires on the city a person lives in"


def small_attribution_graph() -> dict:
    """Twelve nodes over four tokens and two layers; the feature 'f1.3.7' has a card."""
    def node(node_id, kind, layer, pos, label, influence, **card):
        return {"id": node_id, "kind": kind, "layer": layer, "pos": pos, "label": label, "activation": 1.5,
                "influence": influence, **card}

    tokens = ["<bos>", "Ada", " lives", " in"]
    nodes = [node(f"e{p}", "embed", -1, p, f"emb {t!r}", 0.1) for p, t in enumerate(tokens)] + [
        node("f0.1.12", "feature", 0, 1, "Ada (the name)", 0.6), node("f0.1.40", "feature", 0, 1, "a person", 0.3),
        node("x0.3", "error", 0, 3, "error L0 at ' in'", 0.05),
        node("f1.3.7", "feature", 1, 3, "Ada's city", 0.8, card=f"<b>{CARD_TEXT}</b><br>top example: Ada lives in …"),
        node("f1.3.99", "feature", 1, 3, "a place comes next", 0.4), node("x1.3", "error", 1, 3, "error L1", 0.05),
        node("l0", "logit", 2, 3, "' Paris'", 1.0), node("l1", "logit", 2, 3, "' Rome'", 0.3)]
    edges = [("e1", "f0.1.12", 0.9), ("e1", "f0.1.40", 0.5), ("e0", "f0.1.40", -0.2), ("f0.1.12", "f1.3.7", 0.8),
             ("f0.1.40", "f1.3.7", 0.3), ("e3", "f1.3.99", 0.6), ("x0.3", "f1.3.99", -0.1), ("f1.3.7", "l0", 1.2),
             ("f1.3.7", "l1", -0.4), ("f1.3.99", "l0", 0.3), ("x1.3", "l0", 0.1), ("e3", "l1", 0.2)]
    return {"tokens": tokens, "n_layers": 2, "title": "Ada lives in", "nodes": nodes,
            "edges": [{"source": s, "target": t, "weight": w} for s, t, w in edges]}


def test_attribution_graph_view_selects_a_node_and_shows_its_card(page, lab):
    """Saved elsewhere (untrusted), the view's note says how to draw it; run, it draws, a click on a feature
    shows its card and dims the other edges, a click on empty space clears the selection."""
    import nbformat

    from utils.vis import INTERACTIVE_HINT, graph_view

    graph = small_attribution_graph()
    view = graph_view(graph)
    nodes = ",\n    ".join(map(repr, graph["nodes"]))
    cell = nbformat.v4.new_code_cell(
        f"from utils.vis import graph_view\n\nnodes = [\n    {nodes}]\nedges = {graph['edges']!r}\n"
        f"graph_view(dict(tokens={graph['tokens']!r}, n_layers=2, title={graph['title']!r}, nodes=nodes, "
        "edges=edges))\n")
    cell.outputs = [nbformat.v4.new_output("display_data", {"text/html": view._repr_html_(), "text/plain": repr(view)})]
    notebook = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": {
        "display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}})
    nbformat.write(notebook, lab["root"] / GRAPH_NOTEBOOK)
    open_notebook(page, GRAPH_NOTEBOOK)
    out = output_locator(page, 0)
    drawing = out.locator(".attribution-graph svg")
    note = out.get_by_text("run its cell again")
    note.wait_for()
    shot(page, "14-graph-untrusted")
    assert drawing.count() == 0, "JupyterLab drew SVG in an untrusted output"

    run_cells(page, 0, 0)
    panel = out.locator(".ag-panel")
    panel.get_by_text(INTERACTIVE_HINT).wait_for()   # the view's script has run
    nodes, edges = out.locator(".ag-nodes > *"), out.locator(".ag-edges > *")
    drawing.scroll_into_view_if_needed()
    shot(page, "15-graph-drawn")
    assert nodes.count() == len(graph["nodes"]) and edges.count() == len(graph["edges"])
    assert not note.is_visible()

    chosen = [n["id"] for n in graph["nodes"]].index("f1.3.7")
    nodes.nth(chosen).click()
    panel.get_by_text(CARD_TEXT).wait_for()
    shot(page, "16-graph-node-selected")
    opacity = "els => els.map(e => Number(getComputedStyle(e).strokeOpacity))"
    drawn = [chosen in (s, t) for s, t, _ in view.edges]   # the view's drawing order
    for incident, value in zip(drawn, edges.evaluate_all(opacity)):
        assert value == 1 if incident else value < 0.2, (incident, value)
    assert "Ada's city" in panel.inner_text() and "' Paris'" in panel.inner_text()

    drawing.click(position={"x": 4, "y": 4})
    panel.get_by_text(INTERACTIVE_HINT).wait_for()
    shot(page, "17-graph-selection-cleared")
    assert CARD_TEXT not in panel.inner_text()
    assert all(value > 0.5 for value in edges.evaluate_all(opacity))
    assert not course_errors(page), course_errors(page)
