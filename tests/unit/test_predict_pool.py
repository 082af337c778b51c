"""/predict's pool: so many analysed, so many waiting, the rest refused at once."""

import threading

import pytest

from plugin.web.predict_pool import Busy, PredictPool


def hold(pool: PredictPool, inside: threading.Event, leave: threading.Event, outcome: list):
    """A request that takes a turn and keeps it until ``leave`` is set."""
    def run():
        try:
            with pool.turn():
                inside.set()
                leave.wait(10)
            outcome.append("done")
        except Busy as exc:
            outcome.append(exc.status)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_turns_places_and_refusals():
    pool = PredictPool(concurrency=1, queue=1, wait_s=10)
    first_in, second_in, leave = threading.Event(), threading.Event(), threading.Event()
    first, second = [], []
    t1 = hold(pool, first_in, leave, first)
    assert first_in.wait(10)
    t2 = hold(pool, second_in, leave, second)  # waits for the first to finish
    # Every place is taken (one analysed, one waiting): refused at once, with a hint.
    with pytest.raises(Busy) as refused, pool.turn():
        pytest.fail("a third upload got a turn")
    assert refused.value.status == 429 and refused.value.retry_after_s == 5
    assert "server.predict_concurrency" in str(refused.value)
    assert not second_in.is_set()
    leave.set()
    t1.join(10)
    t2.join(10)
    assert first == second == ["done"] and second_in.is_set()
    with pool.turn():  # every place is free again
        pass
    assert 1 <= pool.retry_after_s() <= 300


def test_a_waiting_upload_gives_up_after_predict_wait_s():
    pool = PredictPool(concurrency=1, queue=1, wait_s=0.05)
    inside, leave = threading.Event(), threading.Event()
    t = hold(pool, inside, leave, [])
    assert inside.wait(10)
    with pytest.raises(Busy) as gave_up, pool.turn():
        pytest.fail("got a turn while the only one was taken")
    assert gave_up.value.status == 503 and "server.predict_wait_s" in str(gave_up.value)
    leave.set()
    t.join(10)
