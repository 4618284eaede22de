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


def course_errors(page) -> list[str]:
    """JavaScript errors, less resources the offline page cannot reach (e.g. the Colab badge image)."""
    return [e for e in page.errors if "Failed to load resource" not in e]


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
