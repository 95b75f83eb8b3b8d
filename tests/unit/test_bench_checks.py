"""bench.compare's correctness checks: each one passes on a store that kept its promises
and fails on one that broke the promise it checks, and a failure ends the run loudly."""

from __future__ import annotations

import dataclasses

import pytest

from bench.compare import Check, Snapshot, booking_checks, correct, engine_checks

# An event of 100 seats + 10 oversell, before a phase and after one that booked 30 seats
# (one a booking) and left 4 on hold, with its counters equal to its rows.
BEFORE = Snapshot(capacity=100, oversell=10, sold=20, held=0, confirmed_rows=20, confirmed_qty=20, held_qty=0)
AFTER = Snapshot(capacity=100, oversell=10, sold=50, held=4, confirmed_rows=50, confirmed_qty=50, held_qty=4)


def wrk(created: int, sent: int, answered: int) -> dict[str, object]:
    return {"statuses": {"201": created, "409": answered - created}, "sent": sent, "answered": answered}


def failed(found: list[Check]) -> set[str]:
    return {name for name, passed, _ in found if not passed}


def test_a_store_that_kept_its_promises_passes_every_check() -> None:
    found = booking_checks(BEFORE, AFTER, wrk(30, 40, 40))
    assert [name for name, _, _ in found] == [
        "seats taken within capacity + oversell",
        "counters equal booking rows",
        "every 201 is in the store",
    ]
    assert failed(found) == set()
    # Ten requests wrk never saw answered may have booked: up to ten more rows than 201s.
    for extra in range(11):
        after = dataclasses.replace(AFTER, sold=50 + extra, confirmed_rows=50 + extra, confirmed_qty=50 + extra)
        assert failed(booking_checks(BEFORE, after, wrk(30, 50, 40))) == set(), extra


@pytest.mark.parametrize(
    ("after", "report", "broken"),
    [
        # Oversold: 107 sold + 4 held of 110.
        (dataclasses.replace(AFTER, sold=107, confirmed_rows=107, confirmed_qty=107), wrk(87, 90, 90),
         "seats taken within capacity + oversell"),
        # Counters drifted from the rows: one sold seat with no booking row, one hold the same.
        (dataclasses.replace(AFTER, confirmed_qty=49), wrk(30, 40, 40), "counters equal booking rows"),
        (dataclasses.replace(AFTER, held_qty=3), wrk(30, 40, 40), "counters equal booking rows"),
        # A 201 answered and not stored.
        (AFTER, wrk(31, 40, 40), "every 201 is in the store"),
        # A stored booking no 201 answered, every request answered.
        (AFTER, wrk(29, 40, 40), "every 201 is in the store"),
        # More stored than the unanswered requests could have booked.
        (AFTER, wrk(20, 40, 35), "every 201 is in the store"),
        # A row counted in the sold delta but not stored, with requests unanswered.
        (dataclasses.replace(AFTER, confirmed_rows=49), wrk(29, 40, 35), "every 201 is in the store"),
    ],
)
def test_each_broken_promise_fails_its_check(after: Snapshot, report: dict[str, object], broken: str) -> None:
    assert broken in failed(booking_checks(BEFORE, after, report))


def test_engine_checks_hold_the_store_to_what_the_engine_counted() -> None:
    store = Snapshot(capacity=10**8, oversell=0, sold=900, held=0, confirmed_rows=900, confirmed_qty=900, held_qty=0)
    # The warm-up's bookings are in the store and in the actor's count, not the engine's.
    assert failed(engine_checks(store, {"bookings": 700, "actor_sold": 900})) == set()
    lost = "every counted booking is in the store"
    assert failed(engine_checks(store, {"bookings": 700, "actor_sold": 901})) == {lost}
    assert failed(engine_checks(store, {"bookings": 901})) == {lost}
    drifted = dataclasses.replace(store, confirmed_rows=899, confirmed_qty=899)
    assert failed(engine_checks(drifted, {"bookings": 700, "actor_sold": 900})) == {
        "counters equal booking rows",
        lost,
    }
    oversold = dataclasses.replace(store, capacity=899)
    assert failed(engine_checks(oversold, {"bookings": 900})) == {"seats taken within capacity + oversell"}


def test_a_failed_check_ends_the_run_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    checks = [
        {"target": "ours_bookings_mariadb", "phase": "run", "check": name, "pass": passed, "detail": detail}
        for name, passed, detail in booking_checks(BEFORE, AFTER, wrk(31, 40, 40))
    ]
    assert correct({"correctness": {"pass": all(c["pass"] for c in checks), "checks": checks}}) is False
    err = capsys.readouterr().err
    assert "CORRECTNESS FAILURE: 1 check(s) failed" in err
    assert "ours_bookings_mariadb (run): every 201 is in the store: 201 answers 31 = new confirmed rows 30" in err

    passing = [{**c, "pass": True} for c in checks]
    assert correct({"correctness": {"pass": True, "checks": passing}}) is True
    assert capsys.readouterr().err == ""

    # Bookings ran and nothing was checked: a failure too, said as such.
    assert correct({"correctness": {"pass": False, "checks": []}}) is False
    assert "CORRECTNESS FAILURE: bookings ran and no check was made" in capsys.readouterr().err
