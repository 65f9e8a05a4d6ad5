"""What a rollback's ``reset --hard`` and ``clean`` in the project cannot give back, taken
before a chunk run's first attempt and put back by each of its rollbacks: the submodules'
checkouts (``submodules``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from specwright import branches, gitops, submodules


@dataclass(frozen=True)
class Keepsafe:
    """The work tree at ``path`` as it was before the run, beyond its commit ``base``."""

    path: Path
    base: str
    subs: tuple[submodules.Checkout, ...] = ()

    @classmethod
    def take(cls, path: Path | str, base: str) -> Keepsafe:
        """Read it (the tree clean: ``gitops.ensure_clean``)."""
        return cls(Path(path), base, submodules.checkouts(path, base))

    def rollback(self, keep: Sequence[str] = (), branch: str | None = None) -> str:
        """``gitops.rollback`` to the base, the submodules put back first; what the rollback
        line adds, "" for nothing: the commits it drops, what it put back."""
        dropped = branches.dropped_by_rollback(self.path, self.base, branch)
        said = [dropped] if dropped else []
        said += submodules.put_back(self.path, self.subs)
        gitops.rollback(self.path, self.base, keep, branch)
        return "; ".join(said)
