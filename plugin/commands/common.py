"""What every `callmood` command does first: read the config (found the same way
everywhere), set up logging that scrubs secrets and phone numbers, open the services.
Shared by plugin/cli.py and the command groups beside this module."""

from __future__ import annotations

import logging
import threading
import time

import click

from plugin import config as config_mod
from plugin.config import ConfigError
from plugin.core import scrub


def setup_logging(level: str) -> None:
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_funasr)
        handler.addFilter(_scrub_logs)  # no credential in any log line (plugin/core/scrub.py)
        handler.addFilter(_mask_phones)  # nor a whole phone number
    for name in ("plugin", "connectors", "rules"):
        logging.getLogger(name).setLevel(level.upper())
    logging.getLogger("waitress.queue").addFilter(_queue_depth_lines)


class OncePer(logging.Filter):
    """Lets one record through per ``seconds``; the next one that passes says how many were
    left out in between."""

    def __init__(self, seconds: float, clock=time.monotonic):
        super().__init__()
        self.seconds, self.clock = seconds, clock
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            now = self.clock()
            if now < self._next:
                self._left_out += 1
                return False
            self._next = now + self.seconds
            left_out, self._left_out = self._left_out, 0
        if left_out:
            record.msg, record.args = (f"{record.getMessage()} ({left_out} more such lines left out "
                                       f"since the last one)"), None
        return True


_scrub_logs = scrub.LogFilter()  # one instance: addFilter does not add it twice
_mask_phones = scrub.PhoneFilter()
# Waitress says "Task queue depth is N" for every request queued behind its busy threads: in
# a burst of webhooks, a line per request, each through the filters above (the receiver alone
# on 2 cores, 500 webhooks/s for 10 s: 293 answered/s with them, 358 without). One line every
# 10 s keeps the warning.
_queue_depth_lines = OncePer(10.0)


def _quiet_funasr(record: logging.LogRecord) -> bool:
    # FunASR logs through the root logger (e.g. "trust_remote_code: False" as a warning).
    return record.levelno >= logging.ERROR or "/funasr/" not in record.pathname.replace("\\", "/")


def load_config(path: str | None) -> config_mod.Config:
    """The config every command reads: -c, else $CALLMOOD_CONFIG, else ./config.yaml, else
    the defaults (config.locate), named in one line on stderr."""
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(cfg.origin_line, err=True)
    setup_logging(cfg.log_level)
    return cfg


def require_env(cfg, worker: bool) -> None:
    """The secrets of what this process receives, sends or looks up (the enabled sources,
    sinks; identity.lookup with a worker), checked before anything starts; other commands
    run without them."""
    try:
        cfg.require_env("sinks", *cfg.enabled_sources(), *(["identity.lookup"] if worker else []))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def open_services(cfg):
    from plugin.services import build
    from rules.engine import RulesError
    try:
        return build(cfg)
    except RulesError as exc:
        raise click.ClickException(f"rules: {exc}") from None
    except ConfigError as exc:  # auth.secret_key unreadable
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # database unreachable, bad URL...
        raise click.ClickException(scrub.text(f"cannot open database {cfg.database_url!r}: "
                                              f"{str(exc).splitlines()[0]}")) from None


def since_seconds(text: str) -> float:
    """A --since such as 90m, 12h or 7d, in seconds; a usage error naming --since otherwise."""
    from rules.yamlfile import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    if seconds <= 0:
        raise click.BadParameter(f"{text!r} must be longer than zero", param_hint="--since")
    return seconds


config_option = click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
                             help="YAML config file (default: $CALLMOOD_CONFIG, else ./config.yaml if there is one, "
                                  "else built-in defaults).")
