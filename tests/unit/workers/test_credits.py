"""Credit accounting: the server's credit plus our running runs always equals the limit."""

from __future__ import annotations

import pytest

from weir.workers.credits import UNLIMITED_SLOTS, CreditLedger


def test_hello_grants_the_free_slots_and_assignments_spend_them() -> None:
    ledger = CreditLedger(3)
    assert ledger.hello() == 3
    for _ in range(3):
        ledger.assigned()
        assert ledger.can_start()
        ledger.started()
        assert ledger.top_up() == 0  # a started run used the credit it spent
    assert not ledger.can_start() and ledger.granted == 0


def test_a_finished_run_gives_one_credit_back() -> None:
    ledger = CreditLedger(2)
    ledger.hello()
    ledger.assigned()
    ledger.started()
    ledger.finished()
    assert ledger.top_up() == 1 and ledger.granted == 2


def test_a_duplicate_assignment_is_refunded() -> None:
    ledger = CreditLedger(2)
    ledger.hello()
    ledger.assigned()
    ledger.started()
    ledger.assigned()  # the same run again: no new slot is used ...
    assert ledger.top_up() == 1  # ... so the credit it spent comes back
    assert ledger.granted + ledger.running == 2


def test_an_assignment_over_the_limit_is_not_taken_and_not_refunded() -> None:
    ledger = CreditLedger(1)
    ledger.hello()
    ledger.assigned()
    ledger.started()
    ledger.assigned()  # the server overspent (a race around a reconnect)
    assert not ledger.can_start()
    assert ledger.top_up() == 0 and ledger.granted == 0


def test_a_reconnect_rebases_the_credit_on_the_runs_still_going() -> None:
    ledger = CreditLedger(4)
    ledger.hello()
    for _ in range(3):
        ledger.assigned()
        ledger.started()
    assert ledger.hello() == 1


def test_draining_grants_nothing_and_takes_nothing() -> None:
    ledger = CreditLedger(2)
    ledger.hello()
    ledger.assigned()
    ledger.started()
    ledger.draining = True
    assert ledger.hello() == 0
    ledger.finished()
    assert ledger.top_up() == 0 and not ledger.can_start()


def test_no_limit_grants_a_large_credit() -> None:
    ledger = CreditLedger(None)
    assert ledger.hello() == UNLIMITED_SLOTS < 2**31


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        CreditLedger(-1)
