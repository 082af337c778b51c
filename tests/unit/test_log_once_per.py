"""plugin.commands.common.OncePer: waitress's "Task queue depth" warning, once per interval."""

import logging

from plugin.commands.common import OncePer


def record(msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, msg, args, None)


def test_one_line_per_interval_and_the_next_says_how_many_were_left_out():
    now = [100.0]
    once = OncePer(10.0, clock=lambda: now[0])
    assert once.filter(record("Task queue depth is %d", 1)) is True
    assert [once.filter(record("Task queue depth is %d", n)) for n in range(2, 50)] == [False] * 48
    now[0] += 9.9
    assert once.filter(record("Task queue depth is %d", 50)) is False
    now[0] += 0.2
    later = record("Task queue depth is %d", 51)
    assert once.filter(later) is True
    assert later.getMessage() == "Task queue depth is 51 (49 more such lines left out since the last one)"
    now[0] += 10
    quiet = record("Task queue depth is %d", 1)
    assert once.filter(quiet) is True and quiet.getMessage() == "Task queue depth is 1"


def test_the_filter_sits_on_waitress_queue_logger_once(tmp_path):
    from plugin.commands.common import _queue_depth_lines, setup_logging

    setup_logging("INFO")
    setup_logging("INFO")
    assert logging.getLogger("waitress.queue").filters.count(_queue_depth_lines) == 1
