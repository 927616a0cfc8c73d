"""Login throttling, recorded in the database: per account and per client address, with
exponential backoff, the same answer whether or not the account exists. Both databases."""

import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from labeling.accounts import login_throttle, users
from labeling.accounts.login_throttle import TooManyAttempts
from labeling.models import LoginThrottle, utcnow

RIGHT = "the-right-password"
HERE = "203.0.113.7"


@pytest.fixture
def ann(Session) -> int:
    with Session.begin() as s:
        return users.add_user(s, name="ann", role="labeler", password=RIGHT).id


def attempt(Session, name, password, *, at, address=HERE):
    """One login attempt in its own transaction, as the login page makes it."""
    with Session.begin() as s:
        user = login_throttle.log_in(s, name=name, password=password, address=address, now=at)
        return None if user is None else user.id


def guess(Session, name, n, *, start, every=timedelta(seconds=0.9), address=HERE):
    """An attacker's `n` wrong passwords, one every `every`: how many were checked at all."""
    checked, at = 0, start
    for i in range(n):
        try:
            attempt(Session, name, f"guess-number-{i}", at=at, address=address)
            checked += 1
        except TooManyAttempts:
            pass
        at += every
    return checked, at


def test_forty_wrong_passwords_then_the_right_one_waits_for_the_backoff(Session, ann):
    start = utcnow()
    checked, at = guess(Session, "ann", 40, start=start)  # 40 tries in 36 s, as in the issue
    assert checked < 12  # most were refused unchecked: the waits doubled
    with pytest.raises(TooManyAttempts) as refused:
        attempt(Session, "ann", RIGHT, at=at)
    wait = refused.value.wait_s
    assert wait >= 2 and f"try again in {wait} s" in str(refused.value)
    with pytest.raises(TooManyAttempts):
        attempt(Session, "ann", RIGHT, at=at + timedelta(seconds=wait - 1))
    assert attempt(Session, "ann", RIGHT, at=at + timedelta(seconds=wait)) == ann
    # a successful login clears the account's counter: the next typo is not punished
    later = at + timedelta(seconds=wait + 1)
    assert attempt(Session, "ann", "a-typo", at=later) is None
    assert attempt(Session, "ann", RIGHT, at=later) == ann


def test_the_backoff_doubles_and_is_capped():
    free = login_throttle.FREE_PER_ACCOUNT
    delays = [login_throttle.delay_after(free + k, free) for k in range(0, 4)]
    assert delays == [None, timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=4)]
    assert login_throttle.delay_after(10_000, free) == login_throttle.MAX_DELAY


def test_an_unknown_account_gets_exactly_the_same_answers(Session, ann):
    start = utcnow()
    real = [_outcome(Session, "ann", start + timedelta(seconds=i)) for i in range(12)]
    ghost = [_outcome(Session, "nobody", start + timedelta(seconds=i)) for i in range(12)]
    assert real == ghost and "locked" in real
    with Session() as s:  # neither the typed names nor the address are stored in clear
        keys = " ".join(s.scalars(select(LoginThrottle.key)))
        assert "ann" not in keys and "nobody" not in keys and HERE not in keys


def _outcome(Session, name, at):
    try:
        return (
            "wrong"
            if attempt(Session, name, "wrong-password", at=at, address=name) is None
            else "in"
        )
    except TooManyAttempts as exc:
        return "locked" if exc.wait_s else "?"


def test_one_address_guessing_many_accounts_is_throttled(Session, ann):
    start = utcnow()
    names = [f"user{i}" for i in range(login_throttle.FREE_PER_ADDRESS + 4)]
    for i, name in enumerate(names):  # one try per name: no account counter ever trips
        try:
            attempt(Session, name, "wrong-password", at=start + timedelta(seconds=i))
        except TooManyAttempts:
            pass
    at = start + timedelta(seconds=len(names))
    with pytest.raises(TooManyAttempts):
        attempt(Session, "ann", RIGHT, at=at)  # this address waits, even for a right password
    assert attempt(Session, "ann", RIGHT, at=at, address="198.51.100.1") == ann  # others don't


def test_counters_are_forgotten_an_hour_after_the_last_failure(Session, ann):
    start = utcnow()
    guess(Session, "ann", login_throttle.FREE_PER_ACCOUNT + 3, start=start, every=timedelta(0))
    later = start + login_throttle.MAX_DELAY + timedelta(seconds=1)
    assert attempt(Session, "ann", "one-more-typo", at=later) is None
    with pytest.raises(TooManyAttempts):  # still counted: locked again at once
        attempt(Session, "ann", RIGHT, at=later)
    much_later = later + login_throttle.FORGET_AFTER + login_throttle.MAX_DELAY
    assert attempt(Session, "ann", "one-more-typo", at=much_later) is None  # starts from 1
    assert attempt(Session, "ann", RIGHT, at=much_later) == ann


def test_the_lock_holds_across_processes(Session, ann, db_url):
    # Another server process records the failures; this one must see the lock.
    code = (
        "from labeling.accounts import login_throttle\n"
        "from labeling.db import make_sessionmaker\n"
        "with make_sessionmaker().begin() as s:\n"
        f"    for _ in range({login_throttle.FREE_PER_ACCOUNT + 4}):\n"
        "        login_throttle.record_failure(s, name='ann', address='elsewhere')\n"
    )
    env = {**os.environ, "RLHF_DATABASE_URL": db_url}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with pytest.raises(TooManyAttempts) as refused:
        attempt(Session, "ann", RIGHT, at=utcnow())
    assert refused.value.wait_s >= 4


def test_concurrent_failures_all_count(Session, ann):
    n = 16
    barrier = threading.Barrier(n)
    errors = []

    def fail() -> None:
        try:
            barrier.wait()
            with Session.begin() as s:
                login_throttle.record_failure(s, name="ann", address=HERE)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fail) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session() as s:
        assert sorted(s.scalars(select(LoginThrottle.failures))) == [n, n]
