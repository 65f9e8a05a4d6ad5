"""The run view of ``02_run.ipynb``: a spec's chunks running through the loop, live.

``RunView`` is a chunk board (status per chunk, coloured), a bounded log of tool calls (the last
``max_log`` lines; every event is in the store), a progress bar per chunk (iterations) and one
overall, Cancel and Retry buttons, the DAG coloured by status and, at the end, a summary table.
It takes its backend as constructor arguments: ``start(cancel, on_progress) -> RunAllResult``
and ``summary(run_id) -> rows``, so tests drive it with fakes and ``.click()``.

``run_spec`` is what the notebook calls: it resolves the project, the spec (``"demo"`` builds
the demo project beside the database, like ``specwright demo``) and the config, then either
shows the live view and runs in a background thread (a person is watching), or runs in the
foreground printing progress lines and raises ``RunFailed`` with the reason when a chunk did not
ship, so papermill exits non-zero.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from specwright.errors import SpecwrightError
from specwright.model import MAX_ITERATIONS, MAX_PARALLEL
from specwright.widgets.common import (
    badge,
    clip,
    dag_figure,
    esc,
    figure_bundle,
    interactive,
    plain,
    project_start,
    table_html,
    text_param,
)

if TYPE_CHECKING:
    from specwright.loop import Progress
    from specwright.model import Chunk, Spec
    from specwright.runner import RunAllResult
    from specwright.store import Store

StartFn = Callable[[threading.Event, Callable[["Progress"], None]], "RunAllResult"]
SummaryFn = Callable[[str], list[dict[str, Any]]]
FINAL = ("shipped", "failed", "blocked", "cancelled", "interrupted")
SUMMARY_COLUMNS = (
    "chunk",
    "title",
    "status",
    "ran",
    "iterations",
    "verdict",
    "input_tokens",
    "cache_tokens",
    "output_tokens",
    "cost_usd",
    "unpriced",
    "time_s",
)


class RunFailed(SpecwrightError):
    """A run-all that did not ship every chunk; the message says which chunk and why."""


class RunView:
    """Live board of one run-all (see the module docstring)."""

    def __init__(
        self,
        chunks: Sequence[Chunk],
        start: StartFn,
        *,
        summary: SummaryFn | None = None,
        title: str = "",
        max_iterations: int = 3,
        max_log: int = 200,
        echo: Callable[[Progress], None] | None = None,
        load_chunks: Callable[[], Sequence[Chunk]] | None = None,
    ) -> None:
        self._start, self._summary, self._echo = start, summary, echo
        self._load_chunks = load_chunks  # the spec's chunks as they are when a run starts
        self.max_iterations = max(1, max_iterations)
        self.chunks: list[Chunk] = []
        self.statuses: dict[str, str] = {}
        self.labels: dict[str, w.HTML] = {}
        self.bars: dict[str, w.IntProgress] = {}
        self.board = w.VBox()
        self.lines: deque[str] = deque(maxlen=max_log)
        self.result: RunAllResult | None = None
        self.error: BaseException | None = None
        self.runs = 0
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()

        self.header = w.HTML(f"<h3>{esc(title or 'Run')}</h3>")
        self.overall = w.IntProgress(value=0, min=0, max=1)
        self.overall_label = w.HTML()
        self.state = w.HTML()
        self.log = w.HTML()
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.retry_button = w.Button(description="Retry", icon="redo", disabled=True)
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.retry_button.on_click(lambda _b: self.retry())
        self.dag = w.Output()
        self.summary_html = w.HTML()
        self.widget = w.VBox(
            [
                self.header,
                w.HBox([self.overall, self.overall_label]),
                self.board,
                w.HBox([self.cancel_button, self.retry_button, self.state]),
                self.dag,
                w.HTML("<b>Tool calls</b> (the most recent; every event is in the store)"),
                self.log,
                self.summary_html,
            ]
        )
        self._set_chunks(chunks)

    def _set_chunks(self, chunks: Sequence[Chunk]) -> None:
        """The board's rows: one per chunk, with its status as read (a row it had keeps its
        bar)."""
        self.chunks = sorted(chunks, key=lambda c: c.position)
        self.position = {c.id: c.position for c in self.chunks}
        self.statuses = {c.id: c.status for c in self.chunks}
        for c in self.chunks:
            if c.id not in self.bars:
                self.labels[c.id] = w.HTML()
                self.bars[c.id] = w.IntProgress(
                    value=0, min=0, max=self.max_iterations, layout={"width": "40%"}
                )
        self.board.children = tuple(
            w.HBox([self.bars[c.id], self.labels[c.id]]) for c in self.chunks
        )
        self.overall.max = max(1, len(self.chunks))
        for c in self.chunks:
            self._paint(c.id)
        self._paint_overall()
        self._draw_dag()

    # --- display ------------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _paint(self, cid: str) -> None:
        c = next(x for x in self.chunks if x.id == cid)
        status = self.statuses[cid]
        self.labels[cid].value = f"<b>{c.position}.</b> {esc(c.title, 120)} {badge(status)}"
        self.bars[cid].bar_style = {"shipped": "success", "failed": "danger"}.get(status, "")

    def _paint_overall(self) -> None:
        done = [s for s in self.statuses.values() if s in FINAL]
        shipped = sum(1 for s in done if s == "shipped")
        self.overall.value = len(done)
        self.overall_label.value = (
            f"{len(done)}/{len(self.chunks)} chunks finished, {shipped} shipped"
        )

    def _draw_dag(self) -> None:
        fig = dag_figure(self.chunks, self.statuses)
        bundle = figure_bundle(fig, html=False)
        self.dag.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def _line(self, text: str) -> None:
        self.lines.append(text)
        body = "\n".join(esc(x, 300) for x in self.lines)
        self.log.value = (
            "<pre style='max-height:18em;overflow-y:auto;font-size:85%;margin:0'>" + body + "</pre>"
        )

    # --- progress -----------------------------------------------------------------------------

    def on_progress(self, p: Progress) -> None:
        """Update the board from one progress event of the runner or the loop."""
        with self._lock:
            if self._echo is not None:
                self._echo(p)
            tag = f"[{self.position[p.chunk_id]}] " if p.chunk_id in self.position else ""
            status = None
            if p.kind == "chunk-start" and p.chunk_id in self.bars:
                status = "running"
                self.bars[p.chunk_id].value = 0
            elif p.kind == "iteration" and p.chunk_id in self.bars:
                self.bars[p.chunk_id].value = min(p.iteration, self.max_iterations)
            elif p.kind == "chunk-done":
                status = getattr(p.data, "status", None) or "failed"
            elif p.kind == "blocked":
                status = "blocked"
            elif p.kind == "skip":
                status = "shipped"
            if p.kind == "event":
                if getattr(p.data, "type", "") in ("tool_call", "error"):
                    self._line(f"{tag}· {p.message}")
            elif p.kind not in ("run", "done"):
                self._line(f"{tag}{p.message}")
            if status and p.chunk_id in self.statuses:
                self.statuses[p.chunk_id] = status
                if status == "shipped":
                    self.bars[p.chunk_id].value = self.bars[p.chunk_id].max
                self._paint(p.chunk_id)
                self._paint_overall()
                self._draw_dag()

    # --- running ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, background: bool = True) -> None:
        """Run (again): in a background thread, or here until it ends."""
        if self.running:
            raise SpecwrightError("a run is already going on in this view; cancel it first")
        self._cancel = threading.Event()
        self.result, self.error = None, None
        self.runs += 1
        self.cancel_button.disabled, self.retry_button.disabled = False, True
        self.state.value = "running…"
        with self._lock:  # a retry: the chunks to do again are pending, not the last run's end
            if self._load_chunks is not None:  # chunks added (or edited) since the last run
                self._set_chunks(self._load_chunks())
            for cid, status in self.statuses.items():
                if status != "shipped":
                    self.statuses[cid] = "pending"
                    self.bars[cid].value = 0
                    self._paint(cid)
            self._paint_overall()
            self._draw_dag()
            self.summary_html.value = ""  # the last run's table, until this one's
        if background:
            self._thread = threading.Thread(target=self._work, daemon=True, name="specwright-run")
            self._thread.start()
        else:
            self._work()

    def _work(self) -> None:
        try:
            result = self._start(self._cancel, self.on_progress)
        except BaseException as exc:  # shown in the view; re-raised by the headless path
            self.error = exc
            self._finish(None)
            if not isinstance(exc, Exception):
                raise
            return
        self._finish(result)

    def wait(self, timeout: float | None = None) -> RunAllResult | None:
        """Block until the background run ends; its result (None after an error)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    def cancel(self) -> None:
        """Ask the run to stop: the current attempt is cancelled, no further chunk starts."""
        if self.running or not self._cancel.is_set():
            self._cancel.set()
            self.cancel_button.disabled = True
            self.state.value = "cancelling…"
            self._line("cancel requested")

    def retry(self) -> None:
        """Run the spec again: shipped chunks are skipped, the others get another go."""
        if self.running:
            return
        self._line("retrying: shipped chunks are skipped")
        self.start()

    def _finish(self, result: RunAllResult | None) -> None:
        with self._lock:
            self.result = result
            self.cancel_button.disabled = True
            if result is None:
                self.state.value = (
                    f"<span style='color:#d62728'>stopped by an error: {esc(self.error)}</span>"
                )
                self.retry_button.disabled = False
                return
            for s in result.chunks:
                if s.chunk_id in self.statuses:
                    self.statuses[s.chunk_id] = s.status
                    self._paint(s.chunk_id)
            self._paint_overall()
            self._draw_dag()
            color = "#2ca02c" if result.ok else "#d62728"
            self.state.value = (
                f"<b style='color:{color}'>{esc(result.status)}</b>: {esc(result.reason)}"
                + (f" (branch {esc(result.branch)})" if result.branch else "")
            )
            self.retry_button.disabled = result.ok
            rows = self.summary_rows()
            self.summary_html.value = "<b>Summary</b>" + table_html(rows, SUMMARY_COLUMNS)

    def summary_rows(self) -> list[dict[str, Any]]:
        """The finished run's table: the backend's summary, else the runner's own result."""
        if self.result is None:
            return []
        if self._summary is not None:
            return self._summary(self.result.run_id)
        return [
            {
                "chunk": s.position,
                "title": s.title,
                "status": s.status,
                "iterations": s.iterations,
                "verdict": s.verdict,
                "cost_usd": s.cost_usd,
            }
            for s in self.result.chunks
        ]

    def failure(self) -> str | None:
        """Why the run did not ship everything (None when it did)."""
        if self.error is not None:
            return f"run-all stopped by an error: {self.error}"
        if self.result is None:
            return "run-all has not finished"
        if self.result.ok:
            return None
        bad = [s for s in self.result.chunks if s.status != "shipped"]
        # titles and reasons may come from a model: bounded, and no control characters (this
        # ends up in a traceback on a terminal and in the executed notebook)
        lines = "; ".join(
            f"chunk {s.position} {plain(s.title, 120)!r} {s.status}: {plain(s.reason, 400)}"
            for s in bad[:20]
        ) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
        head = f"{self.result.status}: {plain(self.result.reason, 400)}"
        return head + (f" [{lines}]" if lines else "")


# --- the notebook entry point -----------------------------------------------------------------


def prepare_demo(store: Store, root: Path) -> Spec:
    """The demo project and spec (what ``specwright demo`` builds), ready to run; replaces an
    earlier demo at ``root``."""
    from specwright import demo

    return demo.prepare(store, root)


def _whole(name: str, value: Any, minimum: int, maximum: int, meaning: str) -> int:
    """A whole-number parameter (papermill passes ``-p max_iterations abc`` as a string), in the
    range the command line's option takes."""
    text = str(value).strip()
    whole = not isinstance(value, bool) and text.lstrip("-").isdigit()
    number = int(text) if whole else minimum - 1
    if not minimum <= number <= maximum:
        raise SpecwrightError(
            f"{name}: expected a whole number from {minimum} to {maximum} ({meaning}), "
            f"got {clip(repr(value), 80)}"
        )
    return number


def run_spec(
    project_dir: str = "",
    spec: str = "demo",
    executor: str = "",
    reviewer: str = "",
    max_iterations: int = 0,
    parallel: int = 1,
    *,
    store: Store | None = None,
    live: bool | None = None,
) -> RunView:
    """Run a spec's chunks from a notebook (see the module docstring); returns the view."""
    from IPython.display import HTML, display

    from specwright import catalog
    from specwright import config as config_mod
    from specwright.cli.runall import Printer
    from specwright.runner import run_all, run_summary
    from specwright.store import Store, resolve_db_path

    spec, executor, reviewer = text_param(spec), text_param(executor), text_param(reviewer)
    parallel = _whole("parallel", parallel, 1, MAX_PARALLEL, "chunks at once")
    max_iterations = _whole(
        "max_iterations", max_iterations, 0, MAX_ITERATIONS, "0 = the config's default"
    )
    live = interactive() if live is None else live
    if spec == "demo":
        from specwright import demo

        known = config_mod.load_text(demo.config_yaml(), source="the demo's config")
        known.executor(executor or None)  # an unknown name fails before the demo is rebuilt
        known.reviewer(reviewer or None)
        store = store or Store(resolve_db_path(config_mod.find_project_root()))
        root = (
            Path(project_dir).expanduser().resolve() if project_dir else store.path.parent / "demo"
        )
        the_spec = prepare_demo(store, root)
        root = root.resolve()
    else:
        root = config_mod.find_project_root(project_start(project_dir))
        store = store or Store(resolve_db_path(root))
        the_spec = catalog.get_spec(store, spec, catalog.ensure_project(store, root))
    config = config_mod.load(root)
    config.executor(executor or None)  # an unknown name fails here, before anything runs
    config.reviewer(reviewer or None)
    chunks = catalog.list_chunks(store, the_spec.id)
    iterations = max_iterations or config.defaults.max_iterations

    def start(cancel: threading.Event, sink: Callable[[Progress], None]) -> RunAllResult:
        return run_all(
            store,
            config,
            root,
            the_spec,
            executor_name=executor or None,
            reviewer_name=reviewer or None,
            parallel=parallel,
            max_iterations=max_iterations or None,
            cancel=cancel,
            on_progress=sink,
        )

    echo = None if live else Printer(positions={c.id: c.position for c in chunks})
    view = RunView(
        chunks,
        start,
        summary=lambda run_id: run_summary(store, run_id),
        title=f"{the_spec.title} ({the_spec.slug})",
        max_iterations=iterations,
        echo=echo,
        load_chunks=lambda: catalog.list_chunks(store, the_spec.id),
    )
    if live:
        display(view.widget)
        view.start(background=True)
        return view
    print(f"Running spec {the_spec.slug} in {root} (database {store.path})", flush=True)
    view.start(background=False)
    if view.error is not None:
        raise view.error
    display(HTML(view.state.value + view.summary_html.value))
    display(figure_bundle(dag_figure(view.chunks, view.statuses)), raw=True)
    problem = view.failure()
    if problem:
        raise RunFailed(f"spec {the_spec.slug}: {problem}")
    return view
