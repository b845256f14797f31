"""The labs as a student meets them: a real JupyterLab, driven in headless Chromium.

A JupyterLab server (127.0.0.1, a free port, a token, throw-away settings, workspaces and
runtime directories) serves a copy of the released labs. For each lab the test opens it in the
browser, alone in a workspace of its own, waits for the kernel to be idle and runs it through the
UI like a student:

* unanswered (as released): cell by cell (Shift+Enter, which goes on after a failure), and every
  cell that stops shows one readable line — a visible check's ``✗ … not implemented yet``, a
  figure's ``✗ rnn_backward: not implemented yet``, a question's ``✗ this cell: not answered
  yet``, a name not defined yet — never a traceback;
* answered (the solution's answer cells pasted into the lab's answer cells): *Run All* from the
  Run menu, and every visible check prints ``✓`` and nothing fails.

Each test shuts its kernel down when it ends; the server, and any kernel left, are shut down
after the last test, also when a test fails.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from rnnlab.labkit import NOT_ANSWERED, NOT_IMPLEMENTED, RUN_ABOVE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted((ROOT / "labs").glob("*.ipynb"))
TOKEN = "rnnlab-test-token"
NOTEBOOK = ".jp-NotebookPanel-notebook"         # the cells' container in the notebook's panel
SCREENSHOTS = ROOT / "_build" / "screenshots"
_WORKSPACES = itertools.count()
SETTINGS = {
    # no news or update toasts over the notebook
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        '{"fetchNews": "false", "checkForUpdates": false}',
    # every cell in the page (JupyterLab 4 otherwise renders only the cells in view)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answered(lab: Path, solution: Path) -> nbformat.NotebookNode:
    """``lab`` with each answer cell's source replaced by the solution's (by nbgrader grade_id)."""
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source
               for c in nbformat.read(solution, as_version=4).cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    notebook = nbformat.read(lab, as_version=4)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
    return notebook


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """A JupyterLab on 127.0.0.1 serving copies of the labs; yields (base URL, its folder)."""
    if not LABS:
        pytest.skip("no released labs in labs/")
    home = tmp_path_factory.mktemp("jupyterlab")
    served = home / "work"
    served.mkdir()
    for lab in LABS:
        shutil.copy(lab, served / lab.name)
        answered = _answered(lab, ROOT / "solutions" / lab.name)
        nbformat.write(answered, served / f"answered_{lab.name}")
    settings = home / "settings"
    for name, text in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    port = _free_port()
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--ServerApp.token={TOKEN}",
               f"--ServerApp.root_dir={served}", f"--LabServerApp.user_settings_dir={settings}",
               f"--LabServerApp.workspaces_dir={home / 'workspaces'}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "RNNLAB_DEVICE": "cpu"}
    env.pop("MPLBACKEND", None)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("jupyter lab did not start:\n"
                                + (home / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, served
    finally:
        _shut_down(server)
        log.close()


def _shut_down(server: subprocess.Popen) -> None:
    """End the server and every kernel it started (they share its process group)."""
    import psutil

    try:
        children = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=10)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], \
        "a kernel of the JupyterLab server outlived it"


def _open_notebook(browser, base: str, name: str):
    """Open ``name`` alone in a fresh JupyterLab workspace; return the page once its kernel is
    idle and the notebook has the keyboard focus in command mode.

    Every test gets a workspace of its own (``/lab/workspaces/<new>/tree/…?reset``): the
    default workspace remembers the notebooks opened before and reopens them as background
    tabs, whose hidden cells then come first in the page. A dialog that asks something before
    the kernel starts (a kernel to select) is accepted.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    workspace = f"test-{next(_WORKSPACES)}"
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{name}?reset&token={TOKEN}",
              wait_until="load")
    page.locator(f"{NOTEBOOK} .jp-Cell").first.wait_for(state="visible", timeout=120_000)
    deadline = time.monotonic() + 120
    # The execution indicator says idle before a kernel exists; the status bar names it.
    while not page.evaluate(
            "() => [...document.querySelectorAll('.jp-StatusBar-TextItem, .jp-StatusBar-Item')]"
            ".some(el => /\\|\\s*Idle/.test(el.textContent)"
            " && !/No Kernel/.test(el.textContent))"):
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():
            dialog.first.click()
        if time.monotonic() > deadline:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{name}-no-idle-kernel.png"))
            pytest.fail(f"{name}: the kernel never became idle (screenshot in {SCREENSHOTS})")
        time.sleep(0.3)
    panels = page.locator(".jp-NotebookPanel").count()
    assert panels == 1, f"{name}: {panels} notebooks open in a fresh workspace"
    page.locator(NOTEBOOK).focus()                  # the keyboard goes to the notebook
    page.keyboard.press("Escape")                   # command mode, first cell active
    return page, context


def _close(base: str, context) -> None:
    """Close the browser context and shut down every kernel session of the server."""
    context.close()
    sessions = json.load(urllib.request.urlopen(f"{base}/api/sessions?token={TOKEN}"))
    for session in sessions:
        request = urllib.request.Request(
            f"{base}/api/sessions/{session['id']}?token={TOKEN}", method="DELETE")
        urllib.request.urlopen(request, timeout=30)


_CELLS = """() => [...document.querySelectorAll('.jp-NotebookPanel-notebook .jp-CodeCell')]
  .filter(c => (c.querySelector('.cm-content') || {}).innerText?.trim())   // not a new empty cell
  .map(c => ({
    prompt: (c.querySelector('.jp-InputPrompt') || {}).textContent || '',
    outputs: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => ({
        text: o.innerText,
        error: !!o.querySelector('[data-mime-type="application/vnd.jupyter.stderr"]')
               || o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr'
    }))
}))"""


def _wait_all_executed(page, timeout_s: float) -> list[dict]:
    """Wait until no code cell waits or runs (no ``[*]``); return every cell's prompt/outputs."""
    deadline = time.monotonic() + timeout_s
    while True:
        cells = page.evaluate(_CELLS)
        if all("*" not in c["prompt"] for c in cells):
            return cells
        if time.monotonic() > deadline:
            pytest.fail(f"cells still running after {timeout_s:.0f} s: "
                        f"{[c['prompt'] for c in cells]}")
        time.sleep(0.5)


def _run_cell(page, index: int, timeout_s: float = 300) -> None:
    """Press Shift+Enter on the active cell ``index`` and wait until it has run.

    A code cell has run when its prompt shows an execution count it did not show before; the
    next cell is only started then, so no request is queued behind a failing one (the kernel
    would abort it).
    """
    cell = page.locator(f"{NOTEBOOK} .jp-Cell").nth(index)
    is_code = "jp-CodeCell" in (cell.get_attribute("class") or "")
    before = cell.locator(".jp-InputPrompt").inner_text() if is_code else ""
    page.keyboard.press("Shift+Enter")
    if not is_code:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        prompt = cell.locator(".jp-InputPrompt").inner_text()
        if prompt != before and re.search(r"\[\d+\]", prompt):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"cell {index} did not run within {timeout_s:.0f} s (prompt {prompt!r})")
        time.sleep(0.2)


def _checks(cells: list[dict]) -> tuple[list[str], list[str]]:
    """(lines starting with ✓, lines starting with ✗) of every output."""
    lines = [line.strip() for c in cells for o in c["outputs"] for line in o["text"].splitlines()]
    return [x for x in lines if x.startswith("✓")], [x for x in lines if x.startswith("✗")]


@pytest.mark.parametrize("lab", LABS, ids=[p.stem for p in LABS])
def test_unanswered_lab_shows_one_readable_line_per_check(lab_server, browser, lab):
    base, _ = lab_server
    page, context = _open_notebook(browser, base, lab.name)
    try:
        count = page.locator(f"{NOTEBOOK} .jp-Cell").count()
        for index in range(count):
            _run_cell(page, index)
        cells = _wait_all_executed(page, 60)
    finally:
        _close(base, context)
    unexecuted = [i for i, c in enumerate(cells) if not c["prompt"].strip("[]: ").isdigit()]
    assert unexecuted == [], f"{lab.name}: code cells never ran: {unexecuted}"
    passed, failed = _checks(cells)
    assert failed, f"{lab.name}: no visible check failed although nothing is answered"
    assert all(line.endswith((NOT_IMPLEMENTED, NOT_ANSWERED)) or line.endswith(RUN_ABOVE)
               for line in failed), f"{lab.name}: unreadable failures: {failed}"
    walls = [o["text"][:200] for c in cells for o in c["outputs"]
             if "Traceback" in o["text"] or o["text"].count("\n") > 15 and o["error"]]
    assert walls == [], f"{lab.name}: a traceback wall in the student's view: {walls}"


@pytest.mark.parametrize("lab", LABS, ids=[p.stem for p in LABS])
def test_answered_lab_passes_every_visible_check_with_run_all(lab_server, browser, lab):
    base, _ = lab_server
    page, context = _open_notebook(browser, base, f"answered_{lab.name}")
    try:
        page.click("li.lm-MenuBar-item:has-text('Run')")
        page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-NotebookPanel-notebook .jp-CodeCell"
            " .jp-InputPrompt')].every(p => /\\[\\d+\\]/.test(p.textContent))",
            timeout=300_000)
        cells = _wait_all_executed(page, 60)
    finally:
        _close(base, context)
    passed, failed = _checks(cells)
    errors = [o["text"][:300] for c in cells for o in c["outputs"] if o["error"]]
    assert failed == [] and errors == [], f"{lab.name}: {failed} {errors}"
    assert passed, f"{lab.name}: no visible check ran"
