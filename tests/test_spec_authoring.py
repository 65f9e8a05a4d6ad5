"""Spec authoring never loses a person's work: an export does not write over edits that were
not imported. Real CLI calls, a real database, real files; the planner is the fake model server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult


@pytest.fixture
def project(git_repo: Path, cli: Callable[..., CliResult]) -> Path:
    """A project with a hand-written spec `login` of one chunk."""
    assert cli("-C", str(git_repo), "spec", "new", "Login", "--body", "# Goal\n").code == 0
    assert cli("-C", str(git_repo), "chunk", "add", "login", "Form").code == 0
    return git_repo


def _ship(store: Any, spec_id: str, chunk_id: str) -> None:
    """Chunk ``chunk_id`` shipped, with the run that shipped it (its history)."""
    from specwright.model import new_id, utcnow

    run = {"id": new_id(), "spec_id": spec_id, "chunk_id": chunk_id, "kind": "chunk"}
    store.insert("runs", {**run, "status": "shipped", "started_at": utcnow()})
    store.update("chunks", {"id": chunk_id}, {"status": "shipped"})


def _planner_at(project: Path, srv: Any) -> None:
    """The project's config: one anthropic planner, the fake model server ``srv``."""
    (project / ".handoff").mkdir(exist_ok=True)
    (project / ".handoff" / "config.yaml").write_text(
        "tools:\n  planners:\n    claude:\n      type: anthropic\n"
        f"      model: claude-sonnet-4-6\n      base_url: {srv.base_url}\n"
    )


def test_an_export_does_not_write_over_edits_that_were_not_imported(
    project: Path, cli: Callable[..., CliResult]
) -> None:
    def run(*args: str) -> CliResult:
        return cli("-C", str(project), *args)

    path = project / ".handoff" / "specs" / "login.md"
    assert run("spec", "export", "login").code == 0
    edited = path.read_text().replace("# Goal\n", "# Goal\n\nLog in with a passkey.\n")
    path.write_text(edited)
    for args in (("spec", "export", "login"), ("plan", "--resume", "login", "--export")):
        out = run(*args)
        assert out.code == 2, out.err
        assert out.err.splitlines() == [
            f"specwright: error: {path}: not overwritten: it has changes that were never "
            f"imported (edited since it was written?); import it first (`specwright spec import "
            f"{path}`) or overwrite it (`specwright spec export login --force`)"
        ]
        assert path.read_text() == edited
    # once imported, its edits are in the store: the next export (after more changes) writes
    assert run("spec", "import", str(path)).code == 0
    assert run("chunk", "add", "login", "Logout").code == 0
    assert run("spec", "export", "login").code == 0
    assert "passkey" in path.read_text() and "## Chunk 2: Logout" in path.read_text()
    # a file just as Specwright wrote it may be rewritten after the spec changed
    assert run("chunk", "add", "login", "Audit").code == 0
    out = run("plan", "--resume", "login", "--export")
    assert out.code == 0, out.err
    assert "## Chunk 3: Audit" in path.read_text()
    # --force is the way to drop edits on purpose
    path.write_text(path.read_text() + "\nstray edit\n")
    assert run("spec", "export", "login").code == 2
    assert run("spec", "export", "login", "--force").code == 0
    assert "stray edit" not in path.read_text()


def test_a_file_as_an_export_would_write_it_now_is_no_edit(
    project: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """Without a fingerprint (another database, a fresh clone), a file identical to what the
    export writes is not refused; any other file is."""
    from specwright.fingerprints import sidecar
    from specwright.store import Store, resolve_db_path

    path = project / ".handoff" / "specs" / "login.md"
    assert cli("-C", str(project), "spec", "export", "login").code == 0
    written = path.read_text()
    sidecar(Store(resolve_db_path(project))).unlink()
    assert cli("-C", str(project), "spec", "export", "login").code == 0
    assert path.read_text() == written
    other = tmp_path / "other.md"
    other.write_text("notes of mine\n")
    out = cli("-C", str(project), "spec", "export", "login", "-o", str(other))
    assert out.code == 2 and f"{other}: not overwritten" in out.err
    assert other.read_text() == "notes of mine\n"


def test_a_file_without_the_specs_id_does_not_silently_replace_the_spec_of_its_slug(
    project: Path, cli: Callable[..., CliResult]
) -> None:
    """`spec import` of a file without `id:` took the place of the stored spec of the same
    slug, runs and all, and said only "imported"."""
    from specwright.model import new_id, utcnow
    from specwright.store import Store, resolve_db_path

    store = Store(resolve_db_path(project))
    ((spec_id,),) = store.query("SELECT id FROM specs")
    other = project / "other.md"
    other.write_text("---\ntitle: Login\n---\n\nSomething else.\n\n## Chunk 1: Other\n")
    out = cli("-C", str(project), "spec", "import", str(other))
    assert out.code == 0, out.err
    assert out.err.splitlines() == [
        f"specwright: warning: {other} has no spec id: it updated spec 'login' ({spec_id}), "
        "the one of its slug: its text and chunks are now the file's"
    ]
    run = {"id": new_id(), "spec_id": spec_id, "kind": "spec", "status": "failed"}
    store.insert("runs", {**run, "started_at": utcnow()})
    third = project / "third.md"
    third.write_text("---\ntitle: Login\n---\n\nA third text.\n\n## Chunk 1: Other\n")
    out = cli("-C", str(project), "spec", "import", str(third))
    assert out.code == 2
    assert out.err.splitlines() == [
        f"specwright: error: {third} has no spec id and its slug 'login' is spec {spec_id}, "
        "which has 1 run(s) and 0 execution(s): nothing imported (to change that spec, edit "
        "its export: `specwright spec export login`; to make a new spec, set another `slug:` "
        "in the file; to put this file in its place anyway, add --replace)"
    ]
    assert store.query("SELECT body FROM specs") == [("Something else.",)]
    out = cli("-C", str(project), "spec", "import", str(third), "--replace")
    assert out.code == 0, out.err
    assert f"{third} has no spec id: it updated spec 'login'" in out.err
    assert store.query("SELECT body FROM specs") == [("A third text.",)]


def test_a_hand_written_spec_file_imported_again_keeps_its_chunks_and_their_runs(
    git_repo: Path, cli: Callable[..., CliResult]
) -> None:
    """Its chunks have no ids: each import made new chunks (a shipped one pending again), and
    once one had runs the import was refused: "keep it in the list" (it was in the list)."""
    from specwright.store import Store, resolve_db_path

    path = git_repo / "login.md"
    path.write_text(
        "---\ntitle: Login\n---\n\nLog in.\n\n## Chunk 1: Form\n\nA form.\n\n"
        "## Chunk 2: Endpoint\n\nPOST /login.\n"
    )
    assert cli("-C", str(git_repo), "spec", "import", str(path)).code == 0
    store = Store(resolve_db_path(git_repo))
    before = dict(store.query("SELECT title, id FROM chunks"))
    ((spec_id,),) = store.query("SELECT id FROM specs")
    _ship(store, spec_id, before["Form"])
    path.write_text(
        path.read_text().replace("POST /login.", "POST /session.") + "\n## Chunk 3: Logout\n"
    )
    out = cli("-C", str(git_repo), "spec", "import", str(path))
    assert out.code == 0, out.err
    assert out.err == ""  # this file is that spec's own source: nothing replaced
    after = {
        t: (i, s, p) for t, i, s, p in store.query("SELECT title, id, status, prompt FROM chunks")
    }
    assert after["Form"] == (before["Form"], "shipped", "A form.")
    assert after["Endpoint"] == (before["Endpoint"], "pending", "POST /session.")
    assert set(after) == {"Form", "Endpoint", "Logout"}


@pytest.mark.parametrize("status", ["ready", "done"])
def test_a_refined_spec_needs_a_review_again(
    git_repo: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """`plan --refine` of an accepted spec left it 'ready' (or 'done'): new text from the
    planner that nobody reviewed, ready to run."""
    from specwright.store import Store, resolve_db_path
    from specwright.testing import FakeModelServer
    from tests.test_studio import SPEC, spec_turn, split_turn

    (git_repo / "s.md").write_text(
        f"---\ntitle: Login\nstatus: {status}\n---\n\nOld text.\n\n## Chunk 1: Form\n"
    )
    assert cli("-C", str(git_repo), "spec", "import", str(git_repo / "s.md")).code == 0
    store = Store(resolve_db_path(git_repo))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeModelServer() as srv:
        (git_repo / ".handoff").mkdir()
        (git_repo / ".handoff" / "config.yaml").write_text(
            "tools:\n  planners:\n    claude:\n      type: anthropic\n"
            f"      model: claude-sonnet-4-6\n      base_url: {srv.base_url}\n"
        )
        for target, turn in (("spec", spec_turn()), ("chunks", split_turn())):
            srv.script(turn)
            args = ("--refine", "use OAuth", "--refine-target", target)
            out = cli("-C", str(git_repo), "plan", "--resume", "login", *args)
            assert out.code == 0, out.err
            assert "[draft; next: review]" in out.out
            assert "then `specwright plan --resume login --accept`" in out.out
            assert store.query("SELECT status FROM specs") == [("draft",)]
            store.update("specs", {"slug": "login"}, {"status": status})
    assert store.query("SELECT body FROM specs") == [(SPEC["body"],)]
    assert [t for (t,) in store.query("SELECT title FROM chunks ORDER BY position")] == [
        "User model",
        "Login endpoint",
        "Logout",
    ]


def test_plan_stream_shows_the_planners_answers_as_they_arrive(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner answers with a forced tool call, so --stream had no text to show: nothing
    at all until the end. Each question and chunk now shows once complete, the spec's text
    as it grows, while the answer still streams."""
    from specwright import config as config_mod
    from specwright.catalog import ensure_project
    from specwright.store import Store, resolve_db_path
    from specwright.studio import Studio
    from specwright.testing import FakeModelServer
    from tests.conftest import run_specwright
    from tests.test_studio import q_turn, spec_turn, split_turn

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    (git_repo / "answers.yaml").write_text("- a\n- b\n- c\n")
    fine = {"expect_stream": True, "chunk_size": 8}
    with FakeModelServer() as srv:
        (git_repo / ".handoff").mkdir()
        (git_repo / ".handoff" / "config.yaml").write_text(
            "tools:\n  planners:\n    claude:\n      type: anthropic\n"
            f"      model: claude-sonnet-4-6\n      base_url: {srv.base_url}\n"
        )
        srv.script(q_turn(**fine), spec_turn(**fine), split_turn(**fine))
        args = ("plan", "--intent", "Add password login", "--answers", "answers.yaml")
        out = run_specwright(*args, "--stream", cwd=git_repo)
        assert out.returncode == 0, out.stderr
        assert out.stderr.splitlines()[1:] == [
            "planner: question 1: Which database?",
            "planner: question 2: Who logs in?",
            "planner: question 3: Sessions or tokens?",
            "planner: spec: Password login",
            "# Goal",
            "",
            "Users log in with a password.",
            "planner: chunk 1: User model",
            "planner: chunk 2: Login endpoint",
            "planner: chunk 3: Logout",
        ]
        # as they arrive: the first question is shown while the answer is still streaming
        seen: list[tuple[int, str]] = []
        srv.script(q_turn(**fine, chunk_delay_s=0.03))
        store = Store(resolve_db_path(git_repo))
        project = ensure_project(store, git_repo)
        config = config_mod.load(git_repo)
        studio = Studio.create(store, project, "Add login", config=config, stream=True)
        before = srv.events_sent
        studio.on_text = lambda piece: seen.append((srv.events_sent - before, piece))
        studio.ask_questions()
        total = srv.events_sent - before
        assert seen[0][1] == "planner: question 1: Which database?\n"
        assert seen[0][0] < total, (seen[0][0], total)  # 14 of 29 events here


def test_stream_progress_starts_over_with_a_retried_answer_and_ends_its_text_line() -> None:
    import json

    from specwright.plan_progress import PlannerProgress

    out: list[str] = []
    answer = json.dumps({"body": "One\nTwo", "title": "T"})
    with PlannerProgress("write_spec", out.append) as shown:
        shown.feed(None)
        for i in range(0, 12, 3):
            shown.feed(answer[i : i + 3])
        shown.feed(None)  # the stream was cut: the client asks again
        for i in range(0, len(answer), 3):
            shown.feed(answer[i : i + 3])
        shown.finish(json.loads(answer))
    assert "".join(out) == (
        "On\nplanner: the answer starts over\nOne\nTwo\nplanner: spec: T\n"  # title last
    )
    out.clear()
    with pytest.raises(RuntimeError), PlannerProgress("write_spec", out.append) as shown:
        shown.feed(answer[:14])
        raise RuntimeError("the planner failed in the middle of the text")
    assert "".join(out) == "One\n"  # the error's line starts on a line of its own


def test_importing_an_old_spec_file_does_not_undo_changes_made_since(
    project: Path, cli: Callable[..., CliResult]
) -> None:
    """A file exported before a `chunk add` (or a refine, or notebook edits), imported back,
    silently deleted the chunk added since."""

    def run(*args: str) -> CliResult:
        return cli("-C", str(project), *args)

    path = project / ".handoff" / "specs" / "login.md"
    assert run("spec", "export", "login").code == 0
    assert run("chunk", "add", "login", "Logout", "--prompt", "an hour of thought").code == 0
    path.write_text(path.read_text().replace("# Goal", "# Goal, edited"))
    out = run("spec", "import", str(path))
    assert out.code == 2
    assert out.err.splitlines() == [
        f"specwright: error: {path}: spec 'login' has changed since this file was written or "
        "imported (a refine, `chunk add`, the notebook), and importing it would undo that: "
        "nothing imported (write the spec as it is now to another file, `specwright spec "
        "export login -o FILE`, and make your edits there, or import this file anyway with "
        "--replace)"
    ]
    assert "Logout" in run("chunk", "list", "login").out
    # the way out it names: the spec as it is, edited in another file, imports
    mine = project / "mine.md"
    assert run("spec", "export", "login", "-o", str(mine)).code == 0
    mine.write_text(mine.read_text().replace("# Goal", "# Goal, edited"))
    assert run("spec", "import", str(mine)).code == 0
    listed = run("chunk", "list", "login").out
    assert "Logout" in listed and "Goal, edited" in run("spec", "show", "login").out
    # a run changes the spec's status, not its text: no reason to refuse an import
    assert run("spec", "export", "login", "--force").code == 0
    from specwright.store import Store, resolve_db_path

    Store(resolve_db_path(project)).update("specs", {"slug": "login"}, {"status": "done"})
    assert run("spec", "import", str(path)).code == 0
    # --replace: the file wins on purpose
    assert run("chunk", "add", "login", "Audit").code == 0
    assert run("spec", "import", str(path)).code == 2
    assert run("spec", "import", str(path), "--replace").code == 0
    assert "Audit" not in run("chunk", "list", "login").out


def test_an_import_does_not_take_a_done_spec_back_without_saying_so(
    git_repo: Path, cli: Callable[..., CliResult]
) -> None:
    """An old export (status: ready) or a hand-written file (no status:, read as draft)
    imported after run-all shipped everything set the done spec back to what the file said."""
    from specwright.store import Store, resolve_db_path

    def run(*args: str) -> CliResult:
        return cli("-C", str(git_repo), *args)

    hand = git_repo / "login.md"
    hand.write_text("---\ntitle: Login\n---\n\nLog in.\n\n## Chunk 1: Form\n\nA form.\n")
    assert run("spec", "import", str(hand)).code == 0
    old = git_repo / "old.md"
    assert run("spec", "export", "login", "-o", str(old)).code == 0
    old.write_text(old.read_text().replace("status: draft", "status: ready"))
    store = Store(resolve_db_path(git_repo))
    store.update("chunks", {"title": "Form"}, {"status": "shipped"})  # as run-all leaves them
    store.update("specs", {"slug": "login"}, {"status": "done"})

    def status() -> str:
        return str(store.query("SELECT status FROM specs")[0][0])

    out = run("spec", "import", str(old))
    assert out.code == 0, out.err
    assert out.err.splitlines() == [
        f"specwright: warning: {old}: status: the file says 'ready' but spec 'login' is done: "
        "it is done (all its chunks have shipped; to set the file's status anyway, import it "
        "with --replace)"
    ]
    assert status() == "done"
    hand.write_text(hand.read_text().replace("Log in.", "Log in, edited."))
    out = run("spec", "import", str(hand))  # no status: in the file: the spec keeps its own
    assert (out.code, out.err, status()) == (0, "", "done")
    hand.write_text(hand.read_text() + "\n## Chunk 2: Logout\n")  # new work: ready to run
    out = run("spec", "import", str(hand))
    assert (out.code, out.err, status()) == (0, "", "ready")
    store.update("specs", {"slug": "login"}, {"status": "done"})
    old.write_text(old.read_text().replace("status: ready", "status: draft"))
    assert run("spec", "import", str(old), "--replace").code == 0
    assert status() == "draft"


def test_an_import_that_changes_a_shipped_chunks_prompt_says_how_to_run_it_again(
    project: Path, cli: Callable[..., CliResult]
) -> None:
    """The chunk stayed shipped, so run-all skipped the edited work without a word."""
    from specwright.store import Store, resolve_db_path

    def run(*args: str) -> CliResult:
        return cli("-C", str(project), *args)

    assert run("chunk", "add", "login", "Logout", "--prompt", "Log out.").code == 0
    path = project / ".handoff" / "specs" / "login.md"
    assert run("spec", "export", "login").code == 0
    store = Store(resolve_db_path(project))
    store.update("chunks", {"title": "Logout"}, {"status": "shipped"})  # as run-all leaves it
    path.write_text(path.read_text().replace("Log out.", "Log out of every device."))
    out = run("spec", "import", str(path))
    assert out.code == 0, out.err
    assert out.err.splitlines() == [
        f"specwright: warning: {path}: shipped chunk(s) whose prompt or acceptance changed: "
        "2 'Logout'; they stay shipped and run-all skips them: to have the agent do them as "
        "the file says now, `specwright run login:2 --force`"
    ]
    assert store.query("SELECT status, prompt FROM chunks WHERE title = 'Logout'") == [
        ("shipped", "Log out of every device.")
    ]
    # an edit of a chunk still to run, or of the spec's text, needs no word
    text = path.read_text().replace("# Goal", "# Goal, edited")
    path.write_text(text.replace("## Chunk 1: Form\n", "## Chunk 1: Form\n\nA form.\n"))
    out = run("spec", "import", str(path))
    assert (out.code, out.err) == (0, "")


def test_an_export_writes_through_a_symlinked_spec_file_and_leaves_other_files_alone(
    project: Path, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """A spec file linked from elsewhere (specs kept in another repository) was replaced by a
    plain file, its target left as it was; and a file of the user's named `<slug>.md.tmp`
    was written over and then moved in place of the spec file."""
    shared = tmp_path / "shared" / "login.md"
    assert cli("-C", str(project), "spec", "export", "login", "-o", str(shared)).code == 0
    link = project / ".handoff" / "specs" / "login.md"
    link.parent.mkdir(parents=True)
    link.symlink_to(shared)
    mine = link.with_name("login.md.tmp")
    mine.write_text("notes of mine\n")
    assert cli("-C", str(project), "chunk", "add", "login", "Logout").code == 0
    out = cli("-C", str(project), "spec", "export", "login")
    assert out.code == 0, out.err
    assert link.is_symlink() and link.resolve() == shared.resolve()
    assert "## Chunk 2: Logout" in shared.read_text()
    assert mine.read_text() == "notes of mine\n"
    assert sorted(p.name for p in link.parent.iterdir()) == ["login.md", "login.md.tmp"]
    assert sorted(p.name for p in shared.parent.iterdir()) == ["login.md"]
    # edits made through the link are edits of its file: not written over
    shared.write_text(shared.read_text() + "\nmy edit\n")
    assert cli("-C", str(project), "spec", "export", "login").code == 2
    assert "my edit" in shared.read_text() and link.is_symlink()
    loop = tmp_path / "loop.md"
    loop.symlink_to(loop)
    out = cli("-C", str(project), "spec", "export", "login", "-o", str(loop), "--force")
    assert (out.code, out.err) == (
        2,
        f"specwright: error: {loop}: cannot write: a loop of symbolic links\n",
    )
    assert loop.is_symlink()


def test_a_hand_written_chunk_matched_by_title_alone_is_refused_when_it_has_history(
    git_repo: Path, cli: Callable[..., CliResult]
) -> None:
    """Chunks without ids are matched by title: swapping two titles gave the shipped chunk's
    id, status and runs to the other chunk's work (which then stayed shipped, never run), and
    the work that had shipped came back pending. A title now matches when the prompt or the
    place matches too, or the chunk has no history; otherwise nothing is imported."""
    from specwright.store import Store, resolve_db_path

    def spec(first: tuple[str, str], second: tuple[str, str]) -> str:
        (t1, p1), (t2, p2) = first, second
        return f"---\ntitle: Login\n---\n\nLog in.\n\n## Chunk 1: {t1}\n\n{p1}\n\n## Chunk 2: {t2}\n\n{p2}\n"

    path = git_repo / "login.md"
    path.write_text(spec(("Form", "A form."), ("Endpoint", "POST /login.")))
    assert cli("-C", str(git_repo), "spec", "import", str(path)).code == 0
    store = Store(resolve_db_path(git_repo))
    ids = dict(store.query("SELECT title, id FROM chunks"))
    ((spec_id,),) = store.query("SELECT id FROM specs")
    _ship(store, spec_id, ids["Form"])
    before = store.query("SELECT id, title, prompt, status FROM chunks ORDER BY position")
    path.write_text(spec(("Endpoint", "A form."), ("Form", "POST /login.")))  # titles swapped
    out = cli("-C", str(git_repo), "spec", "import", str(path))
    assert out.code == 2
    assert out.err.splitlines() == [
        f"specwright: error: {path}:11: chunk 2 'Form' has no id, and another prompt and "
        "position than the spec's chunk of that title (position 1, shipped, with runs): are "
        "they the same chunk? nothing imported (edit the spec's export instead, whose chunks "
        "carry their ids: `specwright spec export login -o FILE`)"
    ]
    assert store.query("SELECT id, title, prompt, status FROM chunks ORDER BY position") == before
    # moved as it was, or edited where it was: still that chunk
    path.write_text(spec(("Endpoint", "POST /session."), ("Form", "A form.")))
    assert cli("-C", str(git_repo), "spec", "import", str(path)).code == 0
    after = {t: (i, s) for i, t, s in store.query("SELECT id, title, status FROM chunks")}
    assert after == {"Form": (ids["Form"], "shipped"), "Endpoint": (ids["Endpoint"], "pending")}


def test_run_all_warns_that_the_spec_file_has_edits_it_will_not_use(
    project: Path, cli: Callable[..., CliResult]
) -> None:
    """Export, edit the file, commit, run-all: the run used the spec as the database held it and
    said nothing of the edits the user could see in the file."""

    def run(*args: str) -> CliResult:
        return cli("-C", str(project), *args)

    path = project / ".handoff" / "specs" / "login.md"
    assert run("spec", "export", "login").code == 0
    assert "warning" not in run("run-all", "login", "--plan").err
    path.write_text(path.read_text().replace("# Goal\n", "# Goal\n\nLog in with a passkey.\n"))
    out = run("run-all", "login", "--plan")
    assert out.code == 0
    assert out.err.strip() == (
        f"specwright: warning: {path} has edits that were never imported; this uses spec "
        f"'login' as the database holds it (to use the file: `specwright spec import {path}`)"
    )
    assert run("spec", "import", str(path)).code == 0
    assert run("run-all", "login", "--plan").err == ""


def test_a_draft_runs_as_it_is_and_the_run_takes_it_out_of_draft(
    project: Path, cli: Callable[..., CliResult]
) -> None:
    """docs/commands.md promises that `draft` and `ready` are marks, not a gate: a spec from
    `spec new` (a draft, never accepted) runs, and the run leaves `draft` behind."""
    import json

    from tests.test_runner import _project

    def status() -> str:
        [spec] = json.loads(cli("-C", str(project), "--json", "spec", "list").out)
        return str(spec["status"])

    _project(project, {"chunks": {"Form": [{"write": "form.txt", "content": "<form>\n"}]}})
    assert status() == "draft"
    out = cli("-C", str(project), "run-all", "login")
    assert out.code == 0 and "shipped: its chunk shipped" in out.out, out.out + out.err
    assert status() == "done"


def test_a_refine_that_changes_a_shipped_chunk_says_run_all_skips_it(
    project: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner rewrote the prompt of a chunk that had shipped: it stayed shipped and run-all
    skipped it, without a word (`spec import` of the same change warns)."""
    from specwright.store import Store, resolve_db_path
    from specwright.testing import FakeModelServer
    from tests.test_studio import split_turn

    store = Store(resolve_db_path(project))
    [(spec_id, chunk_id)] = store.query("SELECT spec_id, id FROM chunks")
    _ship(store, str(spec_id), str(chunk_id))
    revised = [
        {
            "key": "c1",
            "title": "Form",
            "prompt": "A form with a passkey button.",
            "acceptance": [],
            "depends_on": [],
        },
        {
            "key": "c2",
            "title": "Passkeys",
            "prompt": "WebAuthn.",
            "acceptance": [],
            "depends_on": ["c1"],
        },
    ]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeModelServer() as srv:
        _planner_at(project, srv)
        srv.script(split_turn({"chunks": revised}))
        out = cli("-C", str(project), "plan", "--resume", "login", "--refine", "add passkeys")
    assert out.code == 0, out.err
    assert out.err.strip().splitlines() == [
        "specwright: warning: --refine: shipped chunk(s) whose prompt or acceptance changed: "
        "1 'Form'; they stay shipped and run-all skips them: to have the agent do them as the "
        "planner says now, `specwright run login:1 --force`"
    ], out.err
    assert store.query("SELECT title, status FROM chunks ORDER BY position") == [
        ("Form", "shipped"),
        ("Passkeys", "pending"),
    ]


def test_a_refine_that_drops_a_chunk_with_runs_asks_the_planner_again(
    project: Path, cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner left out a chunk that had runs: the refine failed with "refusing to delete
    it (keep it in the list)", a list the user never wrote, after the planner was paid. The
    planner is now asked again, told to keep it, as for a cycle in its list."""
    from specwright.store import Store, resolve_db_path
    from specwright.testing import FakeModelServer
    from tests.test_studio import split_turn

    store = Store(resolve_db_path(project))
    [(spec_id, chunk_id)] = store.query("SELECT spec_id, id FROM chunks")
    _ship(store, str(spec_id), str(chunk_id))
    passkeys = {
        "key": "c2",
        "title": "Passkeys",
        "prompt": "WebAuthn.",
        "acceptance": [],
        "depends_on": [],
    }
    kept = {
        "key": "c1",
        "title": "Form",
        "prompt": "The login form.",
        "acceptance": [],
        "depends_on": [],
    }
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeModelServer() as srv:
        _planner_at(project, srv)
        srv.script(split_turn({"chunks": [passkeys]}), split_turn({"chunks": [kept, passkeys]}))
        out = cli("-C", str(project), "plan", "--resume", "login", "--refine", "passkeys only")
        asked_again = json.dumps(srv.model_requests[-1].body)
    assert out.code == 0, out.err
    assert "chunk c1 ('Form') has runs: keep it in the list, key c1" in asked_again
    assert store.query("SELECT id, title, status FROM chunks ORDER BY position") == [
        (chunk_id, "Form", "shipped"),
        (
            store.query("SELECT id FROM chunks WHERE title = 'Passkeys'")[0][0],
            "Passkeys",
            "pending",
        ),
    ]


def test_plan_json_gives_its_chunks_times_with_their_offset(
    project: Path, cli: Callable[..., CliResult]
) -> None:
    """`plan --json` gave a chunk's created_at as the store's UTC with no offset, which a
    reader in another zone takes for local time (as `spec show --json` now does not)."""
    out = cli("-C", str(project), "--json", "plan", "--resume", "login")
    assert out.code == 0, out.err
    [chunk] = json.loads(out.out)["chunks"]
    assert chunk["created_at"].endswith("+00:00") and chunk["updated_at"].endswith("+00:00")
