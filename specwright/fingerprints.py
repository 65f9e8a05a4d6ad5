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


def remember(store: Store, file: Path | str, data: bytes, spec_id: str) -> None:
    """Record that ``file`` holds ``data``, the spec ``spec_id`` as the store has it (written
    or imported)."""
    path = sidecar(store)
    marks = _load(path)
    marks[str(Path(file).resolve())] = {"sha256": digest(data), "spec_id": spec_id}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # a read-only folder: later exports ask instead
        tmp.write_text(json.dumps(marks, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
