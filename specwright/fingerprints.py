"""What Specwright last wrote to (``spec export``) or read from (``spec import``) each spec file,
as a SHA-256 of its bytes, so an export never writes over edits that were not imported.

The fingerprints live beside the database, in ``<database file>.spec-files.json`` (a mapping of
absolute file path to digest and spec id): they describe what *this* database holds, like the database
itself, not the repository, so they are not committed with the spec files (a file a teammate
committed, exported from another database, is not taken for one this database wrote). A sidecar
rather than a table: no schema migration for a cache whose loss costs nothing but a question
(without a fingerprint, a file that differs from what an export would write now is refused until
imported or overwritten with ``--force``, which is the safe side). Failing to read or write it
is not an error, for the same reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from specwright.model import Spec
    from specwright.store import Store


def digest(data: bytes) -> str:
    """The fingerprint of a file's bytes."""
    return hashlib.sha256(data).hexdigest()


def sidecar(store: Store) -> Path:
    """Where ``store``'s spec file fingerprints are kept."""
    return store.path.with_name(store.path.name + ".spec-files.json")


def _load(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def _entry(store: Store, file: Path | str) -> dict[str, str]:
    return _load(sidecar(store)).get(str(Path(file).resolve()), {})


def known(store: Store, file: Path | str) -> str | None:
    """The digest of what Specwright last wrote to or read from ``file``, if it knows one."""
    return _entry(store, file).get("sha256")


def spec_of(store: Store, file: Path | str) -> str | None:
    """The id of the spec last exported to or imported from ``file``, if known."""
    return _entry(store, file).get("spec_id")


def stored(store: Store, spec_id: str) -> str:
    """The fingerprint of spec ``spec_id`` as the store holds it now, but for its status (which
    runs change, and which no import should be refused for)."""
    from dataclasses import replace

    from specwright.catalog import get_spec, list_chunks
    from specwright.specfile import render

    spec = replace(get_spec(store, spec_id), status="draft")
    return digest(render(spec, list_chunks(store, spec_id)).encode("utf-8"))


def remember(store: Store, file: Path | str, data: bytes, spec_id: str) -> None:
    """Record that ``file`` holds ``data``, the spec ``spec_id`` as the store has it now
    (written or imported)."""
    path = sidecar(store)
    marks = _load(path)
    entry = {"sha256": digest(data), "spec_id": spec_id, "stored": stored(store, spec_id)}
    marks[str(Path(file).resolve())] = entry
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # a read-only folder: later exports ask instead
        tmp.write_text(json.dumps(marks, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def refuse_unimported(store: Store, spec: Spec, path: Path, data: bytes) -> None:
    """Refuse to write ``data`` over ``path`` when it holds edits that were never imported:
    neither what Specwright last wrote or imported there nor ``data`` itself."""
    from specwright.specfile import MAX_FILE_BYTES, SpecFileError

    try:
        with open(path, "rb") as fh:
            on_disk = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problem = f"cannot read it to check for edits ({exc.strerror or exc})"
    else:
        if on_disk == data or digest(on_disk) == known(store, path):
            return
        problem = "it has changes that were never imported (edited since it was written?)"
    raise SpecFileError(
        f"{path}: not overwritten: {problem}; import it first (`specwright spec import "
        f"{path}`) or overwrite it (`specwright spec export {spec.slug} --force`)"
    )


def refuse_stale(store: Store, spec_id: str, path: Path | str) -> None:
    """Refuse to import ``path`` over spec ``spec_id`` when the spec changed in the store since
    the file was written or imported (a refine, `chunk add`, the notebook): the import would
    undo those changes."""
    from specwright.catalog import get_spec
    from specwright.specfile import SpecFileError

    entry = _entry(store, path)
    if entry.get("spec_id") != spec_id or entry.get("stored") in (None, stored(store, spec_id)):
        return
    slug = get_spec(store, spec_id).slug
    raise SpecFileError(
        f"{path}: spec {slug!r} has changed since this file was written or imported (a refine, "
        "`chunk add`, the notebook), and importing it would undo that: nothing imported (write "
        f"the spec as it is now to another file, `specwright spec export {slug} -o FILE`, and "
        "make your edits there, or import this file anyway with --replace)"
    )
