"""A real browser: the HTML report (`specwright report --html`) and the executed usage notebook
exported to HTML, served on 127.0.0.1 and opened in headless Chromium over the DevTools
protocol. No console errors, every plotly figure drew (its SVG exists), screenshots saved under
the git-ignored ``out/screenshots/``. Skips, saying why, where Chromium is not installed."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from specwright.store import Store
from tests.conftest import run_specwright
from tests.support_notebooks import OUT, copy_database, demo_database, out_dir, papermill

pytestmark = pytest.mark.browser

CHROMIUM = (
    os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
    "--remote-allow-origins=*", "--window-size=1280,1800",
]  # fmt: skip
WAIT_S = 60.0  # generous upper bounds for a loaded CI machine; never asserted on


def _need_chromium() -> str:
    if not CHROMIUM:
        pytest.skip(
            "headless Chromium is not installed (Debian: apt-get install chromium; or set "
            "CHROMIUM_PATH): the browser check of the HTML report and usage notebook did not run"
        )
    return CHROMIUM


class Browser:
    """Headless Chromium with a fresh profile, driven over the DevTools protocol."""

    def __init__(self, binary: str) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="specwright-chromium-")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        port_file = Path(self.profile) / "DevToolsActivePort"
        waiter = threading.Event()
        for _ in range(int(WAIT_S * 10)):
            if (
                port_file.exists() and port_file.read_text().strip()
            ) or self.proc.poll() is not None:
                break
            waiter.wait(0.1)
        if self.proc.poll() is not None or not port_file.exists():
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            self.close()
            raise AssertionError(f"chromium did not start: {err[-2000:]}")
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=WAIT_S) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=WAIT_S, suppress_origin=True
        )
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv()))

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads too)."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a)) for a in p["args"]))
            elif e.get("method") == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p["exceptionDetails"])[:500])
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)[
            "result"
        ].get("value")

    def screenshot(self, path: Path) -> None:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        height = min(int(size["height"]) + 1, 16_000)
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/favicon.ico":  # the browser asks on its own; not the page's fault
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The report and the executed usage notebook (as HTML), served on 127.0.0.1."""
    _need_chromium()
    site = _site(tmp_path_factory)
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


_built: Path | None = None


def _site(factory: pytest.TempPathFactory) -> Path:
    """Build the pages once per session: the report and 03 executed, then exported."""
    global _built
    if _built is not None:
        return _built
    from specwright.widgets.export import export_html

    db = copy_database(demo_database(factory), factory.mktemp("browser-db"))
    site = out_dir("browser")
    report = run_specwright("report", "--html", str(site / "report.html"),
                            env={"SPECWRIGHT_DB": str(db)})  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    executed = site / "03_usage.ipynb"
    run = papermill("03_usage.ipynb", executed, db)
    assert run.returncode == 0, run.stderr[-3000:]
    export_html(executed, site / "03_usage.html")
    _built = site
    return site


@pytest.mark.parametrize(("page", "figures"), [("report.html", 8), ("03_usage.html", 9)])
def test_page_draws_every_figure_without_console_errors(
    served: str, page: str, figures: int
) -> None:
    browser = Browser(_need_chromium())
    try:
        browser.call("Page.navigate", url=f"{served}/{page}")
        browser.wait_event("Page.loadEventFired")
        count = (
            "(() => { const d = [...document.querySelectorAll('.plotly-graph-div')];"
            " return [d.length, d.filter(x => x.querySelector('svg.main-svg')).length]; })()"
        )
        waiter = threading.Event()
        plots, drawn = 0, -1
        for _ in range(int(WAIT_S * 4)):
            plots, drawn = browser.evaluate(count)
            if plots >= figures and drawn == plots:
                break
            waiter.wait(0.25)
        browser.screenshot(OUT / "screenshots" / page.replace(".html", ".png"))
        assert plots >= figures, f"{page}: {plots} plotly figures, expected {figures}"
        assert drawn == plots, f"{page}: only {drawn} of {plots} figures drew an SVG"
        titles = browser.evaluate(
            "[...document.querySelectorAll('.plotly-graph-div .gtitle')].map(t => t.textContent)"
        )
        assert len(titles) == plots and all(t.strip() for t in titles), titles
        assert browser.errors() == []
    finally:
        browser.close()
    assert (OUT / "screenshots" / page.replace(".html", ".png")).stat().st_size > 10_000


HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script> \"q\" & 'a'"


def _claude_log(home: Path, days_models: list[tuple[str, str]]) -> None:
    """A Claude Code log with one reply per (day, model), at 10:00 UTC."""
    folder = home / ".claude" / "projects" / "-tmp-p"
    folder.mkdir(parents=True)
    lines = []
    for i, (day, model) in enumerate(days_models):
        message = {
            "model": model, "id": f"msg_{i}", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": HOSTILE}],
            "usage": {"input_tokens": 1000, "output_tokens": 100,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }  # fmt: skip
        lines.append({
            "type": "assistant", "sessionId": "s1", "cwd": "/tmp/p", "version": "2.0.50",
            "uuid": f"u{i}", "requestId": f"req_{i}", "timestamp": f"{day}T10:00:00.000Z",
            "message": message,
        })  # fmt: skip
    (folder / "s1.jsonl").write_text(
        "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    )


def test_report_draws_hostile_names_as_text_and_days_in_order(tmp_path: Path) -> None:
    """Agents' text with markup and quotes is drawn as written and runs nothing; the days of
    the cost figure are in time order (the costliest model's day came first), and a window of
    one day shows that day, not a tick of "00:00:00", its billing block as 5 hours, and its
    empty tables say so on screen."""
    from specwright.catalog import create_spec, ensure_project
    from specwright.model import ToolCall, ToolResult, Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.store import Store

    binary = _need_chromium()
    home = Path(os.environ["HOME"])
    _claude_log(home, [("2025-01-03", "claude-opus-4-1-20250805"),
                       ("2025-01-01", "claude-haiku-4-5-20251001"), ("2025-01-02", HOSTILE)])  # fmt: skip
    db = Path(os.environ["SPECWRIGHT_DB"])
    ingest = run_specwright("ingest", "claude-logs")
    assert ingest.returncode == 0, ingest.stderr
    store = Store(db)
    spec = create_spec(store, ensure_project(store, tmp_path), HOSTILE, "")
    with ExecutionRecorder(store, role="executor", backend="scripted", spec_id=spec.id) as rec:
        rec.on_event(ToolCall(call_id="1", tool=HOSTILE, input={}))
        rec.on_event(ToolResult(call_id="1", output=HOSTILE, is_error=False))
        rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1, cost_usd=0.5))
    pages = {"all": (), "one day": ("--since", "2025-01-03", "--until", "2025-01-03")}
    seen: dict[str, Any] = {}
    for name, window in pages.items():
        page = tmp_path / f"{name.replace(' ', '-')}.html"
        made = run_specwright("report", "--html", str(page), "--timezone", "UTC", *window)
        assert made.returncode == 0, made.stderr
        browser = Browser(binary)
        try:
            browser.call("Page.navigate", url=page.as_uri())
            browser.wait_event("Page.loadEventFired")
            waiter = threading.Event()
            for _ in range(int(WAIT_S * 4)):
                if browser.evaluate("document.querySelectorAll('svg.main-svg').length") >= 8:
                    break
                waiter.wait(0.25)
            seen[name] = browser.evaluate(
                """(() => { const fig = [...document.querySelectorAll('.plotly-graph-div')];
                const ticks = (i, a) => [...fig[i].querySelectorAll(`.${a}tick text`)]
                    .map(t => t.textContent);
                return {pwned: window.__pwned === undefined ? null : window.__pwned,
                  injected: document.querySelectorAll('img[src=x]').length + [...document.scripts].filter(s => s.textContent.startsWith('window.__pwned')).length,
                  texts: [...document.querySelectorAll('svg text')].map(t => t.textContent),
                  days: ticks(0, 'x'), blocks: ticks(2, 'x'),
                  empty: [...document.querySelectorAll('td[colspan]')].map(td => {
                    const r = document.createRange(); r.selectNodeContents(td);
                    return r.getBoundingClientRect().right <= window.innerWidth; })}; })()"""
            )
            assert browser.errors() == [], (name, browser.errors())
        finally:
            browser.close()
    for name, page in seen.items():
        assert page["pwned"] is None and page["injected"] == 0, (name, page)
    texts = "\n".join(seen["all"]["texts"])
    assert HOSTILE[:60] in texts and "&quot;" not in texts and "&#" not in texts
    assert seen["all"]["days"] == ["2025-01-01", "2025-01-02", "2025-01-03"], seen["all"]
    assert seen["one day"]["days"] == ["2025-01-03"], seen["one day"]
    # its tables are empty, the widest one too: "no data yet" is on screen, not off its right
    assert len(seen["one day"]["empty"]) == 4 and all(seen["one day"]["empty"]), seen["one day"]
    assert seen["one day"]["blocks"] and not any(
        "." in t or t.count(":") > 1 for t in seen["one day"]["blocks"]
    ), seen["one day"]["blocks"]


def test_one_shipped_chunk_cost_is_drawn_on_an_axis_from_zero(store: Store, tmp_path: Path) -> None:
    """The usage notebook's box of what a shipped chunk cost, with one chunk: its axis ran
    from -0.5 to 1 (negative dollars), the $0.01 point drawn at about 0."""
    import plotly.io as pio

    from specwright.catalog import add_chunk, create_spec, ensure_project, update_chunk
    from specwright.model import Usage
    from specwright.recorder import ExecutionRecorder
    from specwright.widgets import usage_data

    binary = _need_chromium()
    spec = create_spec(store, ensure_project(store, tmp_path), "One", "")
    chunk = add_chunk(store, spec, "Only", "do it")
    update_chunk(store, chunk.id, status="shipped", iterations=1, verdict="SHIP")
    with ExecutionRecorder(
        store, role="executor", backend="scripted", spec_id=spec.id, chunk_id=chunk.id
    ) as rec:
        rec.finish(status="ok", usage=Usage(input_tokens=10, output_tokens=1, cost_usd=0.01))
    fig = usage_data.cost_per_shipped_chunk(store, usage_data.Filters(tz="UTC"))
    page = tmp_path / "box.html"
    page.write_text(pio.to_html(fig, include_plotlyjs="inline"), encoding="utf-8")
    browser = Browser(binary)
    try:
        browser.call("Page.navigate", url=page.as_uri())
        browser.wait_event("Page.loadEventFired")
        ticks: list[str] = []
        waiter = threading.Event()
        for _ in range(int(WAIT_S * 4)):
            ticks = browser.evaluate("[...document.querySelectorAll('.ytick text')]"
                                     ".map(t => t.textContent)")  # fmt: skip
            if ticks:
                break
            waiter.wait(0.25)
        assert browser.errors() == []
    finally:
        browser.close()
    values = [float(t.replace("\u2212", "-")) for t in ticks]
    assert values and min(values) == 0 and 0.01 <= max(values) < 0.05, ticks
