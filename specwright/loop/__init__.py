"""The Ralph loop for one chunk: execute -> verify -> review -> SHIP (commit) | retry.

``run_chunk`` takes one chunk through up to ``maxIterations`` attempts in a git work tree (the
project root on the spec's branch, or a worktree run-all made). Before the first attempt it
refuses a dirty tree, records the base commit and runs the verification baseline. Every attempt
is recorded: the agent's execution and events, one ``verifications`` row per step, a ``reviews``
row. A shipped attempt is committed with a ``Specwright-Chunk`` trailer; any other ends rolled
back (policy ``rollback``) or kept for the next attempt (``keep``). The loop stops on the first of:
SHIP, BLOCKED, max iterations, budget, wall time, no progress, cancel (an Event or Ctrl-C: the
agent's process group is killed), agent errors after retries, rate-limit waits beyond their
allowance (an overloaded service's backoff too: ``overloaded``), refused or missing credentials of the agent or the reviewer (``auth``: at once,
another try could not succeed), a model the agent's API does not know (``unknown_model``: the
same), an account out of credit or a plan without this use (``billing``: the same, no wait helps),
an account its owner must put right, on hold, disabled or awaiting verification (``account``),
an agent that cannot start (``cannot_start``: the same). Leaving is a ``LoopExit`` carrying the reason; the run and
chunk rows are written in ``finally``, so a crash never leaves a row ``running``, and an
unshipped run always ends with the tree back at its base commit (each rejected attempt's diff
is saved beside the database first), on its branch whatever the agent checked out. What an
agent changed in the repository outside its work tree (refs, stash, config, hooks) is put back
once it ends and named in a warning event of its execution (``specwright.gitstate``).

Modules: ``run`` (the loop and its records), ``agent`` (one attempt in a stoppable worker
thread), ``prompt`` (what the agent is told), ``records`` (its run and chunk rows, the
attempts' patches), ``lines`` (its progress texts), ``results`` (what it hands back).
"""

from specwright.loop.prompt import Feedback, build_prompt, system_prompt
from specwright.loop.results import ChunkResult, Progress, ProgressSink
from specwright.loop.run import run_chunk

__all__ = [
    "ChunkResult",
    "Feedback",
    "Progress",
    "ProgressSink",
    "build_prompt",
    "run_chunk",
    "system_prompt",
]
