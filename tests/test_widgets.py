"""The notebook views, driven like a person would — set ``.value``, ``.click()`` — with fake
backends (and the real store where it matters); no browser, no kernel."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from specwright import catalog
from specwright.errors import SpecwrightError
from specwright.loop import ChunkResult, Progress
from specwright.model import Chunk, TextEvent, ToolCall, new_id
from specwright.runner import ChunkSummary, RunAllResult
from specwright.store import Store
from specwright.studio import Question
from specwright.widgets import (
    ChunkRow,
    Draft,
    Filters,
    RunFailed,
    RunView,
    StudioBackend,
    StudioView,
    UsageView,
    dag_figure,
    interactive,
    run_spec,
)
from specwright.widgets.common import clip, esc, markdown_html
from specwright.widgets.studio_backend import for_project
from tests.conftest import git
from tests.support_notebooks import make_project, make_spec

# --- helpers ------------------------------------------------------------------------------------


def test_escaping_bounds_and_markdown_are_safe() -> None:
    assert esc("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert len(clip("x" * 10_000, 100)) == 100 and clip("x" * 10_000, 100).endswith("…")
    html = markdown_html("# Title\n\n<img src=x onerror=alert(1)> [a](javascript:alert(1))")
    assert "<h1>Title</h1>" in html
    assert "<img" not in html and "javascript:" not in html


def test_the_run_summary_table_says_yes_or_no_as_the_cli_does() -> None:
    from specwright.widgets.common import table_html

    html = table_html([{"chunk": 1, "ran": True}, {"chunk": 2, "ran": False}], ["chunk", "ran"])
    assert ">yes<" in html and ">no<" in html and "True" not in html and "False" not in html


def test_a_markdown_image_is_a_link_not_fetched_when_shown() -> None:
    """A planner's spec with an image pointing anywhere (a tracking pixel) was fetched by the
    browser as soon as the spec was shown; it is a link, followed only when clicked."""
    html = markdown_html(
        "Spec ![chart](http://tracker.invalid/p.png?who=me) and ![](http://x.invalid/q)"
    )
    assert "<img" not in html, html
    assert '<a href="http://tracker.invalid/p.png?who=me">image: chart</a>' in html
    assert '<a href="http://x.invalid/q">image: http://x.invalid/q</a>' in html


def test_interactive_is_false_outside_a_kernel_and_can_be_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert interactive() is False
    monkeypatch.setenv("SPECWRIGHT_HEADLESS", "0")
    assert interactive() is True
    monkeypatch.setenv("SPECWRIGHT_HEADLESS", "1")
    assert interactive() is False


def _chunks(n: int = 3) -> list[Chunk]:
    ids = [new_id() for _ in range(n)]
    return [
        Chunk(id=ids[i], spec_id="s", position=i + 1, title=f"<b>chunk {i + 1}</b>",
              depends_on=tuple(ids[:i][-1:]))
        for i in range(n)
    ]  # fmt: skip


def test_dag_figure_colours_nodes_by_status_and_escapes_titles() -> None:
    chunks = _chunks()
    fig = dag_figure(chunks, {chunks[0].id: "shipped", chunks[1].id: "failed"})
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"shipped", "failed", "pending"}
    assert by_name["shipped"].marker.color == "#2ca02c"
    assert by_name["failed"].marker.color == "#d62728"
    assert list(by_name["pending"].x) == [2.0]  # depth 2: after 1 and 2
    assert "&lt;b&gt;chunk 1&lt;/b&gt;" in by_name["shipped"].hovertext[0]
    assert len(fig.layout.annotations) == 2  # one arrow per dependency


# --- the run view -------------------------------------------------------------------------------


class FakeRun:
    """A scripted run-all: emits progress, then returns a result; records every start."""

    def __init__(self, chunks: list[Chunk], statuses: list[list[str]], events: int = 3) -> None:
        self.chunks, self.statuses, self.events = chunks, statuses, events
        self.starts: list[threading.Event] = []
        self.block: threading.Event | None = None

    def __call__(self, cancel: threading.Event, sink: Any) -> RunAllResult:
        self.starts.append(cancel)
        statuses = self.statuses[min(len(self.starts), len(self.statuses)) - 1]
        run_id = new_id()
        final: list[str] = []
        for c, status in zip(self.chunks, statuses, strict=True):
            final.append(status)
            if status == "shipped" and len(self.starts) > 1:
                sink(Progress("skip", run_id, c.id, 0, f"chunk {c.position}: already shipped"))
                continue
            sink(Progress("chunk-start", run_id, c.id, 0, f"chunk {c.position}: starting"))
            sink(Progress("iteration", run_id, c.id, 1, "iteration 1/3"))
            for i in range(self.events):
                call = ToolCall(f"c{i}", "bash", {"command": "<script>x</script>"})
                sink(Progress("event", run_id, c.id, 1, f"bash <script>{i}</script>", call))
            sink(Progress("event", run_id, c.id, 1, "text", TextEvent("thinking")))
            if self.block is not None:
                self.block.set()
                cancel.wait(30)
            if cancel.is_set():
                status = final[-1] = "cancelled"
            result = ChunkResult(run_id, c.id, status, f"{status} because", 1)
            sink(Progress("chunk-done", run_id, c.id, 1, f"chunk {c.position}: {status}", result))
        ok = all(s == "shipped" for s in final)
        summaries = tuple(
            ChunkSummary(c.id, c.position, c.title, s, 1, reason=f"{s} because")
            for c, s in zip(self.chunks, final, strict=True)
        )
        status = "shipped" if ok else ("cancelled" if cancel.is_set() else "failed")
        return RunAllResult(run_id, "s", status, f"run {status}", summaries, "specwright/x")


def test_run_view_board_log_bars_and_summary_after_a_shipped_run() -> None:
    chunks = _chunks()
    fake = FakeRun(chunks, [["shipped"] * 3], events=10)
    view = RunView(chunks, fake, max_log=5, max_iterations=3)
    assert view.cancel_button.disabled and view.retry_button.disabled
    view.start(background=False)
    assert view.statuses == dict.fromkeys((c.id for c in chunks), "shipped")
    assert view.overall.value == 3 and "3/3 chunks finished, 3 shipped" in view.overall_label.value
    assert all(b.value == 3 and b.bar_style == "success" for b in view.bars.values())
    assert "&lt;b&gt;chunk 1&lt;/b&gt;" in view.labels[chunks[0].id].value
    assert "<b>chunk 1</b>" not in view.labels[chunks[0].id].value
    # the log is bounded, shows tool calls (not text), escaped
    assert len(view.lines) == 5
    assert "<script>" not in view.log.value and "&lt;script&gt;" in view.log.value
    assert "thinking" not in view.log.value
    assert "shipped" in view.state.value and view.retry_button.disabled
    assert "Summary" in view.summary_html.value and "run shipped" in view.state.value
    assert view.failure() is None
    dag = view.dag.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert {t["name"] for t in dag["data"]} == {"shipped"}


def test_run_view_failure_enables_retry_which_runs_again_skipping_shipped() -> None:
    chunks = _chunks()
    fake = FakeRun(chunks, [["shipped", "failed", "blocked"], ["shipped"] * 3])
    view = RunView(chunks, fake)
    view.start(background=False)
    assert view.statuses[chunks[1].id] == "failed"
    assert "chunk 2 '<b>chunk 2</b>' failed: failed because" in (view.failure() or "")
    assert not view.retry_button.disabled and view.cancel_button.disabled
    assert view.bars[chunks[1].id].bar_style == "danger"
    view.retry_button.click()
    assert view.wait(timeout=60) is not None
    assert len(fake.starts) == 2 and view.runs == 2
    assert view.failure() is None and view.retry_button.disabled
    assert any("already shipped" in line for line in view.lines)


def test_retry_shows_the_chunks_to_do_again_as_pending_not_as_the_last_run_ended() -> None:
    """Retrying, the board said "3/3 chunks finished, 1 shipped", chunk 2 red and failed and
    the last run's summary, until each chunk started again."""
    chunks = _chunks()
    fake = FakeRun(chunks, [["shipped", "failed", "blocked"], ["shipped"] * 3])
    seen: list[tuple[str, dict[str, str], str, str]] = []

    def start(cancel: threading.Event, sink: Any) -> RunAllResult:
        bar = view.bars[chunks[1].id]
        seen.append((view.overall_label.value, dict(view.statuses), bar.bar_style,
                     view.summary_html.value))  # fmt: skip
        return fake(cancel, sink)

    view = RunView(chunks, start)
    view.start(background=False)
    assert "Summary" in view.summary_html.value
    view.retry_button.click()
    assert view.wait(timeout=60) is not None
    label, statuses, style, summary = seen[1]
    assert label == "1/3 chunks finished, 1 shipped"
    assert [statuses[c.id] for c in chunks] == ["shipped", "pending", "pending"]
    assert style == "" and summary == ""
    assert "3/3 chunks finished, 3 shipped" in view.overall_label.value


def test_retry_shows_a_chunk_added_since_the_last_run_on_the_board(
    store: Store, tmp_path: Path
) -> None:
    """The board kept the chunks of its first run: one added before Retry ran without a row,
    and its start failed in the view ("on_progress callback failed: KeyError")."""
    root = make_project(tmp_path / "proj")
    spec = make_spec(store, root)
    view = run_spec(str(root), spec.slug, store=store, live=True)
    assert view.wait(timeout=120) is not None and view.failure() is None
    script = root / ".handoff" / "script.yaml"
    steps = yaml.safe_load(script.read_text())
    steps["chunks"]["4"] = [{"write": "four.txt", "content": "four\n"}, {"say": "wrote it"}]
    script.write_text(yaml.safe_dump(steps))
    git(root, "commit", "-qam", "a script for chunk 4")
    four = catalog.add_chunk(store, spec, "Write four.txt", "Create four.txt.")
    errors: list[BaseException] = []
    view._echo = None
    real = view.on_progress

    def watched(p: Progress) -> None:
        try:
            real(p)
        except BaseException as exc:  # what the runner would only print
            errors.append(exc)
            raise

    view.on_progress = watched  # type: ignore[method-assign]
    view.start(background=False)
    assert errors == [] and view.failure() is None
    assert [c.id for c in view.chunks][-1] == four.id and len(view.board.children) == 4
    assert "4/4 chunks finished, 4 shipped" in view.overall_label.value
    assert "Write four.txt" in view.labels[four.id].value


def test_cancel_button_stops_a_background_run() -> None:
    chunks = _chunks(1)
    fake = FakeRun(chunks, [["shipped"]])
    fake.block = threading.Event()
    view = RunView(chunks, fake)
    view.start()  # background thread; the fake waits for the cancel
    assert fake.block.wait(60)
    assert view.running and not view.cancel_button.disabled
    view.cancel_button.click()
    result = view.wait(timeout=60)
    assert fake.starts[0].is_set()
    assert result is not None and result.status == "cancelled"
    assert view.statuses[chunks[0].id] == "cancelled"
    assert "cancelled" in view.state.value and not view.retry_button.disabled


def test_run_view_shows_an_error_of_the_backend_and_allows_retry() -> None:
    def boom(cancel: threading.Event, sink: Any) -> RunAllResult:
        raise SpecwrightError("the tree is dirty <here>")

    view = RunView(_chunks(1), boom)
    view.start(background=False)
    assert "the tree is dirty &lt;here&gt;" in view.state.value
    assert not view.retry_button.disabled
    assert "stopped by an error" in (view.failure() or "")


def test_run_spec_headless_raises_run_failed_with_the_reason(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", bad_chunk=1)
    store = Store(tmp_path / "db" / "specwright.duckdb")
    spec = make_spec(store, root)
    with pytest.raises(RunFailed, match=r"chunk 1 'Write one\.txt' failed") as info:
        run_spec(str(root), spec.slug, max_iterations=1, store=store, live=False)
    assert "chunk 2 'Write two.txt' blocked" in str(info.value)
    assert store.query("SELECT status FROM runs WHERE kind = 'spec'") == [("failed",)]


def test_run_spec_live_runs_in_the_background_and_fills_the_summary(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    store = Store(tmp_path / "db" / "specwright.duckdb")
    spec = make_spec(store, root)
    view = run_spec(str(root), spec.slug, store=store, live=True)
    assert isinstance(view, RunView)
    result = view.wait(timeout=300)
    assert result is not None and result.ok, view.state.value
    assert view.summary_html.value.count("<tr>") == 4  # header + 3 chunks
    assert store.query("SELECT count(*) FROM chunks WHERE status = 'shipped'") == [(3,)]


def test_run_spec_names_a_bad_executor_before_running(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    store = Store(tmp_path / "db" / "specwright.duckdb")
    spec = make_spec(store, root)
    with pytest.raises(SpecwrightError, match="nope"):
        run_spec(str(root), spec.slug, executor="nope", store=store, live=False)
    assert store.query("SELECT count(*) FROM runs") == [(0,)]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("parallel", 100_000, "parallel: expected a whole number from 1 to 256 (chunks at once)"),
        ("max_iterations", "1" * 20, "max_iterations: expected a whole number from 0 to 1000"),
    ],
)
def test_run_spec_takes_the_counts_the_command_line_does(
    tmp_path: Path, name: str, value: object, expected: str
) -> None:
    """`-p parallel 100000` or a max_iterations of 20 digits was taken by 02 while `run-all
    --parallel` and the config's defaults refuse them: one line naming the parameter and the
    range, before anything runs."""
    root = make_project(tmp_path / "proj")
    store = Store(tmp_path / "db" / "specwright.duckdb")
    spec = make_spec(store, root)
    with pytest.raises(SpecwrightError, match=re.escape(expected)):
        run_spec(str(root), spec.slug, store=store, live=False, **{name: value})
    assert store.query("SELECT count(*) FROM runs") == [(0,)]


def test_a_project_dir_that_is_no_directory_is_refused_before_it_is_a_project(
    store: Store, tmp_path: Path
) -> None:
    """01 and 02 recorded a mistyped project_dir as a project (01 a draft spec in it too), where
    03 refused it."""
    from specwright.widgets import open_studio, usage_dashboard

    typo = str(tmp_path / "no-such-dir")
    expected = f"project_dir: {typo!r} is not a directory"
    with pytest.raises(SpecwrightError, match=expected):
        open_studio(typo, "Add a flag", store=store, live=False)
    with pytest.raises(SpecwrightError, match=expected):
        run_spec(typo, "add-a-flag", store=store, live=False)
    with pytest.raises(SpecwrightError, match=expected):
        usage_dashboard(project_dir=typo, store=store, live=False)
    assert store.query("SELECT count(*) FROM projects") == [(0,)]
    assert store.query("SELECT count(*) FROM specs") == [(0,)]


def test_numbers_papermill_passes_for_text_parameters_are_taken_as_text(
    store: Store, tmp_path: Path
) -> None:
    """`-p spec 2025`, `-p project 2025`, `-p intent 42` reach the notebooks as ints: each
    failed with a traceback (TypeError, a DuckDB ConversionException, AttributeError)."""
    from specwright.widgets import open_studio, usage_dashboard

    root = make_project(tmp_path / "2025")
    spec = make_spec(store, root, title="2025")
    assert spec.slug == "2025"
    view = run_spec(str(root), 2025, store=store, live=False)  # type: ignore[arg-type]
    assert view.failure() is None
    assert usage_dashboard(project=2025, store=store, live=False) is None  # type: ignore[arg-type]
    with pytest.raises(SpecwrightError, match=r"spec 42: planner .* needs an API key"):
        open_studio(str(root), 42, store=store, live=False)  # type: ignore[arg-type]


# --- the studio view ----------------------------------------------------------------------------


class FakeStudio:
    """An in-memory studio backend that records calls."""

    def __init__(self, problem: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.problem = problem
        self.answers: dict[int, str] = {}
        self.rows: list[ChunkRow] = []
        self.fail_answer = False

    def draft(self, stage: str = "answers", body: str = "") -> Draft:
        qs = tuple(
            Question(f"q{i}", i, f"<i>Question {i}</i>?", "why", self.answers.get(i))
            for i in (1, 2)
        )
        chunks = tuple(
            Chunk(r.id or f"id{n}", "spec1", n, r.title) for n, r in enumerate(self.rows, 1)
        )
        return Draft("spec1", "my-spec", "My spec", "build it", body, "draft", stage, qs, chunks)

    def backend(self) -> StudioBackend:
        def record(name: str, value: Any = None) -> Any:
            def call(*args: Any) -> Any:
                self.calls.append((name, *args))
                return value() if callable(value) else value

            return call

        def answer(spec_id: str, pos: int, text: str) -> None:
            self.calls.append(("answer", spec_id, pos, text))
            if self.fail_answer:
                raise SpecwrightError("database is locked")
            self.answers[pos] = text

        def save_chunks(spec_id: str, rows: list[ChunkRow]) -> Draft:
            from specwright.widgets.studio_backend import rows_to_drafts

            rows_to_drafts(rows)  # the real validation
            self.rows = list(rows)
            self.calls.append(("save_chunks", [r.title for r in rows]))
            return self.draft("review", "# Spec")

        return StudioBackend(
            resume=record("resume"),
            create=record("create", lambda: self.draft("questions")),
            ask=record("ask", lambda: self.draft()),
            answer=answer,
            run=record("run", lambda: self.draft("review", "# Spec")),
            write_spec=record("write_spec", lambda: self.draft("chunks", "# Spec\n\n<script>")),
            split=record("split", lambda: self.draft("review", "# Spec")),
            save_chunks=save_chunks,
            export=record("export", Path("/p/.handoff/specs/my-spec.md")),
            planner_problem=lambda: self.problem,
        )


def names(fake: FakeStudio) -> list[str]:
    return [c[0] for c in fake.calls]


def test_ask_needs_an_intent_then_creates_the_draft_and_asks() -> None:
    fake = FakeStudio()
    view = StudioView(fake.backend(), debounce_s=None)
    view.ask_button.click()
    assert "Type what you want built" in view.message.value and fake.calls == []
    view.intent.value = "build it"
    view.ask_button.click()
    assert names(fake) == ["create", "ask"]
    assert len(view.answers) == 2 and view.ask_button.disabled
    assert "&lt;i&gt;Question 1&lt;/i&gt;" in view.questions_box.children[0].value
    assert view.write_button.disabled  # questions unanswered


def test_a_missing_api_key_is_a_clear_message_and_the_draft_is_kept() -> None:
    fake = FakeStudio(problem="planner 'opus' needs an API key: set ANTHROPIC_API_KEY")
    view = StudioView(fake.backend(), debounce_s=None)
    view.intent.value = "build it"
    view.ask_button.click()
    assert names(fake) == ["create"]
    assert "ANTHROPIC_API_KEY" in view.message.value and view.draft is not None
    assert not view.add_button.disabled  # chunks can still be written by hand


def test_answers_are_marked_unsaved_until_saved_and_kept_when_the_store_refuses() -> None:
    fake = FakeStudio()
    view = StudioView(fake.backend(), debounce_s=None)
    view.show(fake.draft())
    view.answers[1].value = "Postgres"
    assert "unsaved changes" in view.marker.value and "answer 1" in view.marker.value
    assert "answer" not in names(fake)
    fake.fail_answer = True
    assert view.flush() is False
    assert "unsaved changes" in view.marker.value and "database is locked" in view.message.value
    fake.fail_answer = False
    view.answers[1].value = "Postgres 16"
    assert view.flush() is True
    assert fake.answers == {1: "Postgres 16"} and "all changes saved" in view.marker.value


def test_edits_are_saved_after_a_pause_without_flush() -> None:
    fake = FakeStudio()
    view = StudioView(fake.backend(), debounce_s=0.01)
    view.show(fake.draft())
    view.answers[2].value = "yes"
    deadline = threading.Event()
    for _ in range(500):  # wait for the debounce timer's save, not for a time
        if fake.answers.get(2) == "yes":
            break
        deadline.wait(0.01)
    assert fake.answers.get(2) == "yes"


def test_write_split_and_the_chunk_table_round_trip() -> None:
    fake = FakeStudio()
    fake.answers = {1: "a", 2: "b"}
    view = StudioView(fake.backend(), debounce_s=None)
    view.show(fake.draft("spec"))
    view.write_button.click()
    assert "<script>" not in view.preview.value and "<h1>Spec</h1>" in view.preview.value
    view.add_button.click()
    view.add_button.click()
    view.rows[0].title.value = "Model"
    view.rows[1].title.value = "API"
    view.rows[1].deps.value = "1"
    assert view.flush() is True
    assert fake.calls[-1] == ("save_chunks", ["Model", "API"])
    # a cycle is refused with the reason and stays marked unsaved
    view.rows[0].deps.value = "2"
    assert view.flush() is False
    assert "cycle" in view.message.value and "chunks" in view.marker.value
    view.rows[0].deps.value = ""
    assert view.flush() is True and "all changes saved" in view.marker.value
    view.rows[1].deps.value = "x"
    assert view.flush() is False and "expected chunk numbers" in view.message.value
    view.rows[1].deps.value = "²"  # a digit to str.isdigit, not to int: was a ValueError
    assert view.flush() is False and "expected chunk numbers" in view.message.value
    view.rows[1].deps.value = "1"
    view.export_button.click()
    assert names(fake)[-1] == "export" and "my-spec.md" in view.message.value


def test_split_does_not_replace_chunks_typed_in_the_table() -> None:
    """Split into chunks stayed enabled over a table filled by hand, and the planner's chunk
    list replaced every row typed there."""
    fake = FakeStudio()
    view = StudioView(fake.backend(), debounce_s=None)
    view.show(fake.draft("chunks", "# Spec"))
    assert not view.split_button.disabled  # an empty table: the planner may fill it
    view.add_button.click()
    view.rows[0].title.value = "Typed by hand"
    assert view.flush() is True and view.split_button.disabled
    view.split()
    assert "split" not in names(fake) and "remove them first" in view.message.value
    view.remove_chunk(view.rows[0])
    assert not view.split_button.disabled
    view.split_button.click()
    assert names(fake)[-1] == "split"


def test_studio_view_over_the_real_store_resumes_a_hand_written_draft(
    store: Store, git_repo: Path
) -> None:
    from specwright.config import Config

    project = catalog.ensure_project(store, git_repo)
    backend = for_project(store, project, Config.default())
    view = StudioView(backend, debounce_s=None)
    view.intent.value = "Add a --json flag"
    view.ask_button.click()  # no planner key in tests: the draft is saved, the view says why
    assert "needs an API key" in view.message.value
    view.add_button.click()
    view.add_button.click()
    view.rows[0].title.value = "Parser"
    view.rows[1].title.value = "Output"
    view.rows[1].deps.value = "1"
    view.rows[1].files.value = "cli.py, out.py"
    view.rows[1].acceptance.value = "prints JSON\n\nexit 0"
    assert view.flush() is True
    # a kernel restart: a new view over the same store resumes the draft
    again = StudioView(for_project(Store(store.path), project, Config.default()), debounce_s=None)
    draft = again.backend.resume("Add a --json flag")
    assert draft is not None
    again.show(draft)
    assert [r.title.value for r in again.rows] == ["Parser", "Output"]
    assert again.rows[1].deps.value == "1" and again.rows[1].files.value == "cli.py, out.py"
    chunks = catalog.list_chunks(store, draft.spec_id)
    assert chunks[1].depends_on == (chunks[0].id,)
    assert chunks[1].acceptance == ("prints JSON", "exit 0")
    path = again.export()
    assert path is not None and path.exists() and "Parser" in path.read_text()
    assert catalog.get_spec(store, draft.spec_id).status == "ready"


def test_removing_a_chunk_row_keeps_what_the_other_rows_need(store: Store, git_repo: Path) -> None:
    """The "needs" field holds row numbers: removing row 3 of five moved rows 4 and 5 up, and
    their numbers then named other chunks (E needed D, not C) or the row itself (a cycle)."""
    from specwright.config import Config

    project = catalog.ensure_project(store, git_repo)
    view = StudioView(for_project(store, project, Config.default()), debounce_s=None)
    view.intent.value = "Five steps"
    view.ask_button.click()  # no planner key: the draft is saved all the same
    needs = {"A": "", "B": "1", "C": "2", "D": "2, 3", "E": "4"}
    for n, (title, deps) in enumerate(needs.items()):
        view.add_button.click()
        view.rows[n].title.value = title
        view.rows[n].deps.value = deps
    assert view.flush() is True
    view.rows[2].remove.click()  # C
    assert view.flush() is True, view.message.value
    assert [(r.title.value, r.deps.value) for r in view.rows] == [
        ("A", ""), ("B", "1"), ("D", "2"), ("E", "3")
    ]  # fmt: skip
    assert view.draft is not None
    chunks = catalog.list_chunks(store, view.draft.spec_id)
    title = {c.id: c.title for c in chunks}
    assert {c.title: [title[d] for d in c.depends_on] for c in chunks} == {
        "A": [], "B": ["A"], "D": ["B"], "E": ["D"]
    }  # fmt: skip


def test_a_refused_edit_once_fixed_and_saved_no_longer_says_not_saved(
    store: Store, git_repo: Path
) -> None:
    from specwright.config import Config

    project = catalog.ensure_project(store, git_repo)
    view = StudioView(for_project(store, project, Config.default()), debounce_s=None)
    view.intent.value = "Two steps"
    view.ask_button.click()
    for n, (title, deps) in enumerate((("A", "2"), ("B", "1"))):
        view.add_button.click()
        view.rows[n].title.value = title
        view.rows[n].deps.value = deps
    assert view.flush() is False
    assert "not saved (chunks): dependency cycle" in view.message.value
    view.rows[0].deps.value = ""
    assert view.flush() is True
    assert "all changes saved" in view.marker.value
    assert "not saved" not in view.message.value, view.message.value


@pytest.mark.parametrize("status", ["draft", "ready", "running", "done", "failed"])
def test_the_studio_export_accepts_a_draft_and_leaves_a_spec_that_ran_as_it_is(
    store: Store, git_repo: Path, status: str
) -> None:
    """Save / Export (and the headless notebook, on every re-run) set any spec 'ready': a done
    spec looked never run, a running one looked idle."""
    from specwright import specfile
    from specwright.config import Config

    project = catalog.ensure_project(store, git_repo)
    source = git_repo / "s.md"
    source.write_text(
        f"---\ntitle: Ran\nstatus: {status}\nintent: Ship it\n---\n\nText.\n\n## Chunk 1: One\n"
    )
    spec = specfile.import_spec(store, project, source)
    view = StudioView(for_project(store, project, Config.default()), debounce_s=None)
    draft = view.backend.resume("Ship it")  # the notebook reopened with the same intent
    assert draft is not None and draft.spec_id == spec.id
    view.show(draft)
    assert f"next: {'review' if status == 'draft' else 'ready'}" in view.marker.value
    path = view.export()
    assert path is not None
    want = "ready" if status == "draft" else status
    assert catalog.get_spec(store, spec.id).status == want
    assert "next: ready" in view.marker.value  # accepted: the marker follows, not "review"
    assert f"status: {want}\n" in path.read_text()
    said = "ready to run" if want == "ready" else f"{status}, left as it is"
    assert f"saved; spec {said}; wrote {path}" in view.message.value
    # a run refuses the tree the new file leaves uncommitted: the message says to commit it
    name = path.relative_to(git_repo).as_posix()
    assert f"commit it before a run (`git add {name}`, `git commit`)" in view.message.value
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "spec")
    assert view.export() == path
    assert f"wrote {path}" in view.message.value and "commit it" not in view.message.value


def test_the_studio_keeps_answers_as_given_once_the_spec_is_written_as_plan_does(
    store: Store, git_repo: Path
) -> None:
    """The notebook saved changed answers after the spec was written from the first ones,
    which `plan --answers` refuses: they changed nothing but looked like they had."""
    from specwright.config import Config
    from specwright.model import new_id, utcnow

    project = catalog.ensure_project(store, git_repo)
    spec = catalog.create_spec(store, project, "Login", intent="Add login")
    for pos, answer in ((1, "Postgres"), (2, None)):
        row = {"id": new_id(), "spec_id": spec.id, "position": pos, "question": f"Q{pos}?"}
        store.insert("spec_questions", {**row, "answer": answer, "created_at": utcnow()})
    backend = for_project(store, project, Config.default())
    view = StudioView(backend, debounce_s=None)
    draft = backend.resume("Add login")
    assert draft is not None
    view.show(draft)
    assert not view.answers[1].disabled  # no text yet: answers may change
    view.answers[1].value = "SQLite"
    assert view.flush() is True
    catalog.update_spec(store, spec.id, body="# Login\n\nWritten from the answers.\n")
    view.show(backend.resume("Add login"))
    assert view.answers[1].disabled and view.answers[2].disabled
    assert "plan --resume login --refine FEEDBACK" in view.questions_box.children[-1].value
    with pytest.raises(SpecwrightError) as refused:
        backend.answer(spec.id, 1, "MySQL")
    assert str(refused.value) == (
        "answer 1: the spec was already written from the answers given; new ones would not "
        "change it (nothing was saved): revise it instead (`specwright plan --resume login "
        "--refine FEEDBACK`)"
    )
    backend.answer(spec.id, 1, "SQLite")  # the same answer again is no change
    answers = store.query("SELECT answer FROM spec_questions ORDER BY position")
    assert answers == [("SQLite",), (None,)]


def test_the_studio_notebook_with_its_defaults_shows_a_draft_without_calling_the_planner(
    store: Store, git_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No intent, no answers: 01 resumed the latest draft and asked the planner its questions
    (a paid call), or without its key failed the run, where the defaults call nothing."""
    from specwright.config import Config
    from specwright.widgets import open_studio

    backend = for_project(store, catalog.ensure_project(store, git_repo), Config.default())
    draft = backend.create("Add login")  # an Ask without the planner's key leaves this
    assert draft.stage == "questions"
    shown = open_studio(str(git_repo), store=store, live=False)
    assert isinstance(shown, Draft) and shown.stage == "questions"
    out = capsys.readouterr().out
    assert "next: the planner's step (questions); run again with `-p intent 'Add login'`" in out
    with pytest.raises(SpecwrightError, match="needs an API key") as headless:  # go on
        open_studio(str(git_repo), "Add login", store=store, live=False)
    assert "table below" not in str(headless.value)  # a papermill run has no view, no table


def test_a_new_intent_typed_over_a_draft_starts_a_spec_for_it(store: Store, git_repo: Path) -> None:
    """The intent box stayed editable over a resumed draft, but Ask was disabled (or asked
    about the draft's own intent) and "all changes saved" showed: the new intent went nowhere."""
    from specwright.config import Config
    from specwright.model import new_id, utcnow

    project = catalog.ensure_project(store, git_repo)
    spec = catalog.create_spec(store, project, "Login", intent="Add login")
    row = {"id": new_id(), "spec_id": spec.id, "position": 1, "question": "Q1?"}
    store.insert("spec_questions", {**row, "created_at": utcnow()})
    view = StudioView(for_project(store, project, Config.default()), debounce_s=None)
    view.show(view.backend.resume("Add login"))
    assert view.ask_button.disabled  # next: answers
    view.intent.value = "Add logout"
    assert not view.ask_button.disabled
    view.ask_button.click()  # no planner key: the new draft is saved, the view says why
    assert view.draft is not None and view.draft.intent == "Add logout"
    assert view.draft.spec_id != spec.id and "needs an API key" in view.message.value
    intents = store.query("SELECT intent FROM specs ORDER BY intent")
    assert intents == [("Add login",), ("Add logout",)]
    assert view.questions_box.children == ()  # the new spec's, not the old one's


@pytest.mark.parametrize("status", ["draft", "done"])
def test_write_spec_does_not_rewrite_a_written_spec(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """Write spec stayed enabled once the spec had text: pressed again it had the planner
    write it anew (a paid call) and marked the spec draft, a done or running one too, its
    chunks split from the old text; the view itself says to revise with `plan --refine`."""
    from specwright import config as config_mod
    from specwright.testing import FakeModelServer

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeModelServer() as srv:  # nothing scripted: any planner call fails the test
        root = make_project(tmp_path / "proj", planner_url=srv.base_url)
        project = catalog.ensure_project(store, root)
        spec = catalog.create_spec(store, project, "Login", "# Login\n\nText.\n",
                                   intent="Add login", status=status)  # fmt: skip
        catalog.add_chunk(store, spec, "Schema", "Make the schema.")
        view = StudioView(for_project(store, project, config_mod.load(root)), debounce_s=None)
        view.show(view.backend.resume("Add login"))
        assert view.write_button.disabled
        view.write_spec()  # called as the button would be
        assert "plan --resume login --refine" in view.message.value
        assert srv.requests == []
    assert catalog.get_spec(store, spec.id).status == status


def test_answering_the_last_question_enables_write_spec(store: Store, git_repo: Path) -> None:
    """The view kept the stage it was shown with: every answer saved, it still said "next:
    answers" and Write spec stayed disabled until the cell ran again."""
    from specwright.config import Config
    from specwright.model import new_id, utcnow

    project = catalog.ensure_project(store, git_repo)
    spec = catalog.create_spec(store, project, "Login", intent="Add login")
    for pos in (1, 2):
        row = {"id": new_id(), "spec_id": spec.id, "position": pos, "question": f"Q{pos}?"}
        store.insert("spec_questions", {**row, "created_at": utcnow()})
    view = StudioView(for_project(store, project, Config.default()), debounce_s=None)
    view.show(view.backend.resume("Add login"))
    assert view.write_button.disabled and "next: answers" in view.marker.value
    view.answers[1].value = "Postgres"
    assert view.flush() is True and view.write_button.disabled  # one still unanswered
    view.answers[2].value = "none"
    assert view.flush() is True
    assert not view.write_button.disabled and "next: spec" in view.marker.value


def test_the_studio_notebook_refuses_changed_answers_once_the_spec_is_written(
    store: Store, git_repo: Path
) -> None:
    """Run again with a changed answers file, 01 said the spec was ready and kept the old
    answers without a word, where the README and `plan --answers` refuse them."""
    from specwright.model import new_id, utcnow
    from specwright.widgets import open_studio

    project = catalog.ensure_project(store, git_repo)
    spec = catalog.create_spec(store, project, "Login", "# Login\n\nText.\n", intent="Add login")
    row = {"id": new_id(), "spec_id": spec.id, "position": 1, "question": "Which DB?"}
    store.insert("spec_questions", {**row, "answer": "Postgres", "created_at": utcnow()})
    catalog.add_chunk(store, spec, "Schema", "Make the schema.")
    with pytest.raises(SpecwrightError, match="answer 1: the spec was already written"):
        open_studio(str(git_repo), "Add login", "", ["MySQL"], store=store, live=False)
    assert catalog.get_spec(store, spec.id).status == "draft"  # not exported as ready
    view = open_studio(str(git_repo), "Add login", "", ["MySQL"], store=store, live=True)
    assert isinstance(view, StudioView)
    assert "answer 1: the spec was already written" in view.message.value
    assert store.query("SELECT answer FROM spec_questions") == [("Postgres",)]
    done = open_studio(str(git_repo), "Add login", "", ["Postgres"], store=store, live=False)
    assert isinstance(done, Draft) and done.status == "ready"  # the same answers: no change


def test_the_studio_does_not_save_chunk_edits_while_the_spec_runs(
    store: Store, git_repo: Path
) -> None:
    """Edits in the chunk table were saved under a running run-all, which had taken the
    chunks' prompts when it started: a chunk then shipped from its old prompt while the table
    and the store showed the new one."""
    import os
    import socket

    from specwright import specfile
    from specwright.config import Config
    from specwright.model import new_id, utcnow

    project = catalog.ensure_project(store, git_repo)
    source = git_repo / "s.md"
    source.write_text(
        "---\ntitle: Ran\nintent: Ship it\n---\n\nText.\n\n## Chunk 1: One\n\nDo one.\n"
    )
    spec = specfile.import_spec(store, project, source)
    now = utcnow()
    live = {"id": new_id(), "spec_id": spec.id, "kind": "spec", "status": "running"}
    live |= {"pid": os.getpid(), "host": socket.gethostname(), "started_at": now}
    store.insert("runs", {**live, "heartbeat_at": now})  # as a live run-all of this process
    view = StudioView(for_project(store, project, Config.default()), debounce_s=None)
    draft = view.backend.resume("Ship it")
    assert draft is not None
    view.show(draft)
    view.rows[0].prompt.value = "Do one, differently."
    assert view.flush() is False
    said = view.message.value
    assert "not saved (chunks): spec &#x27;ran&#x27; is running: run " in said
    assert said.endswith("): save them once it has ended</span>"), said
    assert [c.prompt for c in catalog.list_chunks(store, spec.id)] == ["Do one."]
    store.update("runs", {"id": live["id"]}, {"status": "shipped"})
    view.rows[0].prompt.value = "Do one, differently!"
    assert view.flush() is True
    assert [c.prompt for c in catalog.list_chunks(store, spec.id)] == ["Do one, differently!"]


# --- the usage view -----------------------------------------------------------------------------


def test_usage_view_redraws_for_each_filter_and_reports_bad_input() -> None:
    import plotly.graph_objects as go

    seen: list[Filters] = []

    def render(f: Filters) -> list[tuple[go.Figure, str]]:
        seen.append(f)
        if f.project == "broken":
            raise SpecwrightError("no <such> project")
        return [(go.Figure(layout={"title": "T"}), "a <caption>")]

    view = UsageView(render, ["alpha", "broken"], Filters(group_by="model"))
    assert seen == [Filters()]
    view.group_by.value = "executor"
    view.project.value = "alpha"
    assert seen[-1] == Filters(project="alpha", group_by="executor")
    assert view.out.outputs[1]["data"]["text/html"] == "<p><i>a &lt;caption&gt;</i></p>"
    import datetime as dt

    view.since.value = dt.date(2025, 2, 1)
    view.until.value = dt.date(2025, 1, 1)
    assert "is after until" in view.message.value and seen[-1].until == ""
    assert view.out.outputs == ()  # "nothing to show" beside the last window's figures: no
    view.until.value = dt.date(2025, 3, 1)
    assert seen[-1] == Filters("2025-02-01", "2025-03-01", "alpha", "executor")
    assert len(view.out.outputs) == 2 and view.message.value == ""
    view.project.value = "broken"
    assert "no &lt;such&gt; project" in view.message.value
    assert view.out.outputs == ()  # alpha's figures are not broken's


def test_usage_figures_have_titles_units_captions_and_honour_the_project(
    store: Store, tmp_path: Path
) -> None:
    from specwright.model import utcnow
    from specwright.widgets import usage_data

    for name in ("alpha", "beta"):
        root = tmp_path / name
        root.mkdir()
        spec = catalog.create_spec(store, catalog.ensure_project(store, root), f"{name} spec")
        chunk = catalog.add_chunk(store, spec, "c1")
        catalog.update_chunk(store, chunk.id, status="shipped", iterations=2)
        exec_id = new_id()
        store.insert("executions", {
            "id": exec_id, "spec_id": spec.id, "chunk_id": chunk.id, "role": "executor",
            "backend": "scripted", "executor": f"ex-{name}", "model": "m1", "status": "ok",
            "started_at": utcnow(), "duration_ms": 1500, "input_tokens": 10, "output_tokens": 5,
            "cost_usd": 0.5,
        })  # fmt: skip
        for t, extra in (("tool_call", {}), ("tool_result", {"is_error": True})):
            store.insert("events", {
                "id": new_id(), "execution_id": exec_id, "seq": 1 if t == "tool_call" else 2,
                "ts": utcnow(), "type": t, "tool_name": "bash", "call_id": "k", **extra,
            })  # fmt: skip
    with store.transaction() as conn:  # rows written by hand: marked as migration 10 does
        from specwright.migrations import BACKFILL_TOOL_RESULTS

        conn.execute(BACKFILL_TOOL_RESULTS)
    figs = usage_data.figures(store, Filters(project="alpha"))
    assert len(figs) == 9
    for fig, caption in figs:
        assert fig.layout.title.text and fig.layout.xaxis.title.text, fig.layout.title.text
        assert fig.layout.yaxis.title.text and "(" in fig.layout.yaxis.title.text + (
            fig.layout.xaxis.title.text
        )  # units
        assert caption.endswith(".") and len(caption) < 200
    spec_fig = usage_data.cost_per_spec(store, Filters(project="alpha"))
    assert list(spec_fig.data[0].y) == ["alpha-spec"]
    both = usage_data.cost_per_spec(store, Filters())
    assert sorted(both.data[0].y) == ["alpha-spec", "beta-spec"]
    tools = usage_data.tool_calls(store, Filters(project="alpha"))
    assert list(tools.data[0].y) == [1] and list(tools.data[1].y) == [100.0]
    with pytest.raises(SpecwrightError, match="group_by"):
        usage_data.figures(store, Filters(group_by="colour"))
    with pytest.raises(SpecwrightError, match="since"):
        usage_data.figures(store, Filters(since="last week"))


def test_usage_figures_keep_specs_of_the_same_slug_in_two_projects_apart(
    store: Store, tmp_path: Path
) -> None:
    """Two projects' "add-tests" specs were one bar of their summed cost, and their chunk 1s
    one bar too."""
    from specwright.model import utcnow
    from specwright.widgets import usage_data

    for name, cost in (("alpha", 0.5), ("beta", 0.25)):
        root = tmp_path / name
        root.mkdir()
        spec = catalog.create_spec(store, catalog.ensure_project(store, root), "Add tests")
        chunk = catalog.add_chunk(store, spec, "c1")
        store.insert("executions", {
            "id": new_id(), "spec_id": spec.id, "chunk_id": chunk.id, "role": "executor",
            "backend": "scripted", "model": "m1", "status": "ok", "started_at": utcnow(),
            "input_tokens": 10, "output_tokens": 5, "cost_usd": cost,
        })  # fmt: skip
    f = Filters(tz="UTC")
    specs = usage_data.cost_per_spec(store, f).data[0]
    assert dict(zip(specs.y, specs.x, strict=True)) == {
        "alpha/add-tests": 0.5, "beta/add-tests": 0.25
    }  # fmt: skip
    chunks = usage_data.cost_per_chunk(store, f).data[0]
    assert dict(zip(chunks.y, chunks.x, strict=True)) == {
        "alpha/add-tests #1 c1": 0.5, "beta/add-tests #1 c1": 0.25
    }  # fmt: skip
    by_spec = usage_data.cost_per_day(store, replace(f, group_by="spec")).data
    assert sorted((t.name, list(t.y)) for t in by_spec) == [
        ("alpha/add-tests", [0.5]), ("beta/add-tests", [0.25])
    ]  # fmt: skip
    alone = usage_data.cost_per_spec(store, replace(f, project="beta")).data[0]
    assert list(alone.y) == ["beta/add-tests"] and list(alone.x) == [0.25]
    # two clones of one repository, both `alpha`: their specs were one bar `alpha/add-tests`
    clone = tmp_path / "clone" / "alpha"
    clone.mkdir(parents=True)
    spec = catalog.create_spec(store, catalog.ensure_project(store, clone), "Add tests")
    store.insert("executions", {
        "id": new_id(), "spec_id": spec.id, "role": "executor", "backend": "scripted",
        "model": "m1", "status": "ok", "started_at": utcnow(), "input_tokens": 1, "cost_usd": 2.0,
    })  # fmt: skip
    specs = usage_data.cost_per_spec(store, f).data[0]
    a, b = f"…/{tmp_path.resolve().name}/alpha", "…/clone/alpha"
    assert dict(zip(specs.y, specs.x, strict=True)) == {
        f"alpha ({a})/add-tests": 0.5, f"alpha ({b})/add-tests": 2.0, "beta/add-tests": 0.25
    }  # fmt: skip


def test_cost_per_shipped_chunk_counts_the_executor_that_shipped_it(
    store: Store, tmp_path: Path
) -> None:
    """A chunk that failed with one executor and shipped with another was one point of both
    executors' costs summed, under whichever of the two any_value() picked."""
    from specwright.model import utcnow
    from specwright.widgets import usage_data

    spec = catalog.create_spec(store, catalog.ensure_project(store, tmp_path), "Mixed")
    chunk = catalog.add_chunk(store, spec, "c1")
    catalog.update_chunk(store, chunk.id, status="shipped", iterations=3)
    calls = (("alpha", "failed", (("executor", 0.5),)),
             ("beta", "shipped", (("executor", 0.1), ("reviewer", 0.02))))  # fmt: skip
    for executor, status, executions in calls:
        run_id = new_id()
        store.insert("runs", {"id": run_id, "spec_id": spec.id, "chunk_id": chunk.id,
                              "kind": "chunk", "status": status, "executor": executor,
                              "started_at": utcnow()})  # fmt: skip
        for role, cost in executions:
            store.insert("executions", {
                "id": new_id(), "run_id": run_id, "spec_id": spec.id, "chunk_id": chunk.id,
                "role": role, "backend": "scripted" if role == "executor" else "checks",
                "executor": executor if role == "executor" else None, "status": "ok",
                "started_at": utcnow(), "input_tokens": 10, "cost_usd": cost,
            })  # fmt: skip
    fig = usage_data.cost_per_shipped_chunk(store, Filters(tz="UTC"))
    assert {t.name: list(t.y) for t in fig.data} == {"beta": [pytest.approx(0.12)]}


def test_the_studio_names_its_answers_parameter_and_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notebook's `answers` file that cannot be read was called `--answers` (a flag the
    notebook has not) and named by the relative path given, not the folder it was read from."""
    from specwright.widgets.studio_backend import answers_list

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecwrightError) as missing:
        answers_list("answers.yaml")
    assert str(missing.value) == (
        f"answers {tmp_path / 'answers.yaml'}: cannot read: No such file or directory"
    )
    (tmp_path / "answers.yaml").write_text("- one\n- [two\n")
    with pytest.raises(SpecwrightError, match=rf"^{tmp_path / 'answers.yaml'}:3: invalid YAML"):
        answers_list("answers.yaml")
    (tmp_path / "answers.yaml").write_text("- one\n- two\n")
    assert answers_list("answers.yaml") == ["one", "two"]


def test_the_usage_notebook_refuses_a_database_file_that_is_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped SPECWRIGHT_DB (or a project never run) made 03 create an empty database and
    draw empty figures, as if nothing had been spent; it names the file and what picked it, as
    `specwright usage` does, and creates nothing."""
    from specwright.widgets import usage_dashboard

    typo = tmp_path / "dat" / "specwright.duckdb"
    monkeypatch.setenv("SPECWRIGHT_DB", str(typo))
    with pytest.raises(SpecwrightError) as caught:
        usage_dashboard(project_dir=str(tmp_path), live=False)
    assert str(caught.value) == (
        f"SPECWRIGHT_DB {typo}: no database file at {typo}; nothing created (check the path)"
    )
    monkeypatch.delenv("SPECWRIGHT_DB")
    root = make_project(tmp_path / "proj")
    default = root / "data" / "specwright.duckdb"
    with pytest.raises(SpecwrightError, match=r"no database yet \(the project.s default\)"):
        usage_dashboard(project_dir=str(root), live=False)
    assert not typo.parent.exists() and not default.parent.exists()
