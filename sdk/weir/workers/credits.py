"""Credit accounting between a worker and the server (pure, no I/O).

Credits are increments (see ``protos/weir/v1/deployments.proto``): the
Hello grants the first ``free_slots``, each ``Credit`` adds more, and each
Assign the server sends spends one. The ledger keeps one invariant:

    credits the server holds for us + runs we are running == limit

(0 credits while draining). After anything that moves either side, the
worker asks :meth:`CreditLedger.top_up` how much to grant, so a finished run,
a duplicate assignment or an assignment the worker could not take all
settle the same way, and the worker never runs more than ``limit`` at once.
"""

from __future__ import annotations

__all__ = ["UNLIMITED_SLOTS", "CreditLedger"]

#: What "no limit" grants: more than any worker will run, well inside int32.
UNLIMITED_SLOTS = 100_000


class CreditLedger:
    """Counts running slots and the credit the server holds, for one connection at a time."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = UNLIMITED_SLOTS if limit is None else limit
        #: Runs this worker is running (accepted and not finished).
        self.running = 0
        #: Credit the server holds for this worker on the current connection.
        self.granted = 0
        #: No new runs: credits go to zero and stay there.
        self.draining = False

    def _target(self) -> int:
        return 0 if self.draining else max(self.limit - self.running, 0)

    def hello(self) -> int:
        """``free_slots`` for a new connection's Hello (the server's credit starts from it)."""
        self.granted = self._target()
        return self.granted

    def assigned(self) -> None:
        """The server sent an Assign: it spent one credit, whatever we do with it."""
        self.granted = max(self.granted - 1, 0)

    def can_start(self) -> bool:
        """Whether one more run fits (not draining, under the limit)."""
        return not self.draining and self.running < self.limit

    def started(self) -> None:
        self.running += 1

    def finished(self) -> None:
        self.running = max(self.running - 1, 0)

    def top_up(self) -> int:
        """Credit to send now to restore the invariant (0: send nothing)."""
        missing = self._target() - self.granted
        if missing <= 0:
            return 0
        self.granted += missing
        return missing
