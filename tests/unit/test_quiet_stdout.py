"""A model loading in a background thread keeps FunASR's prints out of stdout without
taking stdout from other threads: what another thread prints meanwhile, and where it
points stdout meanwhile (click's test runner does, for `callmood` commands), stays its own."""

from __future__ import annotations

import io
import sys
import threading

from plugin.model.common import _quiet_stdout


def test_a_background_load_neither_swallows_nor_undoes_another_threads_stdout():
    entered, leave, sink = threading.Event(), threading.Event(), io.StringIO()

    def load():
        with _quiet_stdout(sink):
            print("funasr notice")
            entered.set()
            leave.wait(5)

    before = sys.stdout
    loader = threading.Thread(target=load)
    loader.start()
    assert entered.wait(5)
    mine = io.StringIO()
    sys.stdout = mine  # as click's CliRunner does while a command runs
    try:
        print("database at newest schema")
        leave.set()
        loader.join(5)
        print("still mine")
        assert sys.stdout is mine
    finally:
        sys.stdout = before
    assert mine.getvalue() == "database at newest schema\nstill mine\n"
    assert sink.getvalue() == "funasr notice\n"


def test_the_loading_threads_own_prints_are_kept_out_and_stdout_put_back():
    sink, before = io.StringIO(), sys.stdout
    with _quiet_stdout(sink):
        print("chatter")
    assert sys.stdout is before and sink.getvalue() == "chatter\n"
