"""The `callmood` command."""

from __future__ import annotations

import csv
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import click

from plugin.config import ConfigError
from plugin.core import files, scrub
from plugin.commands.common import (config_option, load_config, open_services, require_env,  # noqa: F401
                                     setup_logging, since_seconds)
from plugin.commands.calls import calls_group
from plugin.commands.deliveries import deliveries_group
from plugin.commands.evaluate import evaluate_command
from plugin.commands.imports import import_command
from plugin.commands.report import report_command
from plugin.commands.trial import trial_receiver
from plugin.web.auth.commands import tokens_group, users_group

log = logging.getLogger("plugin")


# Shared with the command groups (plugin/commands/): the old names stay for this module.
_load, _require_env, _services = load_config, require_env, open_services


@click.group()
@click.version_option(package_name="callmood")
def main():
    """CallMood: speech-emotion alerts for helpdesks and call centers."""
    # Whatever a command creates (the database and its -wal/-shm, recordings, decoded
    # audio, the secret key, ffmpeg's output) is readable by this user only.
    files.restrict_umask()


@main.command()
@config_option
@click.option("--host", help="Override server.host.")
@click.option("--port", type=int, help="Override server.port.")
@click.option("--no-worker", is_flag=True, help="Receive webhooks only; run `callmood worker` elsewhere.")
def serve(config_path, host, port, no_worker):
    """Run the web receiver, API and dashboard, with a worker and the scheduler in-process."""
    from waitress import create_server

    from plugin.web.app import create_app

    cfg = _load(config_path)
    with_worker = cfg.worker.enabled and not no_worker
    _require_env(cfg, with_worker)
    host, port = host or cfg.server.host, port or cfg.server.port
    _check_listen(host, port)  # a port in use: said now, before the database and anything else
    svc = _services(cfg)
    app = create_app(services=svc)
    # The port is taken before anything starts (the model loader, the scheduler, the
    # worker), so that losing a race for it still ends the command in one line.
    # Waitress buffers a whole request body before a thread sees it: no more than an
    # upload may be (its default is 1 GB per request).
    try:
        server = create_server(app, host=host, port=port, threads=cfg.server.threads,
                               max_request_body_size=cfg.server.max_upload_bytes + 64 * 1024,
                               connection_limit=cfg.server.connection_limit,
                               channel_timeout=cfg.server.idle_timeout_s)
    except OSError as exc:
        svc.close()
        raise click.ClickException(_cannot_listen(host, port, exc)) from None
    # Until here a signal has its default effect: the process holds nothing that needs stopping.
    stop = _Stop(cfg.worker.stop_grace_s).install()  # before the model loads and work is taken
    if not svc.accounts.has_users():
        click.echo(f"No users yet: create the first admin with: {_first_admin_command(config_path)}", err=True)
    runtime = svc.runtime(worker=with_worker).start()
    log.info("CallMood listening on http://%s:%s (database %s)", server.effective_host,
             server.effective_port, scrub.text(cfg.database_url))
    click.echo(f"CallMood listening on http://{server.effective_host}:{server.effective_port}", err=True)
    stop.then(runtime.stop_taking_work)
    try:
        # From here a signal raises SystemExit in this thread, which ends waitress's loop
        # (waitress catches it and lets the requests in progress finish, 5 s at most).
        stop.raise_in_main = True
        if stop.signal is None:
            server.run()
    except SystemExit:
        pass
    finally:
        stop.raise_in_main = False
        server.close()
        runtime.stop(grace_s=stop.grace_left())
        svc.close()
    _exit_now()


@main.command()
@config_option
def worker(config_path):
    """Run only the worker and delivery loop (scale out: one per GPU machine)."""
    cfg = _load(config_path)
    _require_env(cfg, worker=True)
    svc = _services(cfg)  # until here a signal has its default effect: the process holds nothing yet
    stop = _Stop(cfg.worker.stop_grace_s).install()  # before the model loads and work is taken
    runtime = svc.runtime().start()
    stop.then(runtime.stop_taking_work)
    click.echo(f"CallMood worker {runtime.owner} running (database {scrub.text(cfg.database_url)})", err=True)
    try:
        stop.wait()
    finally:
        runtime.stop(grace_s=stop.grace_left())
        svc.close()
    _exit_now()


@main.command()
@config_option
def migrate(config_path):
    """Create or upgrade the database schema."""
    cfg = _load(config_path)
    svc = _services(cfg)
    click.echo(f"database at newest schema: {scrub.text(cfg.database_url)}")
    svc.close()


@main.command()
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--csv", "as_csv", is_flag=True, help="Write CSV (one row per segment) to stdout.")
@click.option("--roles", help="Channel layout of stereo files, e.g. 0=agent,1=customer.")
@click.option("--queue", "--scenario", "queue", help="The call's queue, which picks the rules scenario "
              "(e.g. finance-complaints).")
def analyze(config_path, files, as_csv, roles, queue):
    """Analyse local recordings: per-segment emotions and the call verdict."""
    from tqdm import tqdm

    from plugin.audio.decode import DecodeError, audio_line, decode
    from plugin.flow.analysis import analyze_audio, listening
    from plugin.flow.segment_rows import TRANSCRIPT_COLUMNS, csv_row, said_line, transcript_cells
    from plugin.model.asr import SpeechService
    from plugin.model.loading import EmotionModel, ModelUnavailable
    from rules.engine import RulesError, evaluate, load_rules

    cfg = _load(config_path)
    channel_roles = _parse_roles(roles)
    try:
        rules = load_rules(cfg.rules_path)
        model = EmotionModel(cfg.model)
        speech = SpeechService(cfg.asr)
        speech.try_load(model.device, model.threads, announce=False)
        listen = listening(speech.get(), cfg.asr, rules)
    except (RulesError, ModelUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    if listen is None and cfg.asr.wanted:  # auto: the emotions without the words, said once
        click.echo(f"no transcripts: {speech.reason}", err=True)
    # Random weights (make-random-model): said on stderr, in each file's heading and CSV row.
    made_by = "trial model, random weights" if model.trial else model.source
    if model.trial:
        click.echo(f"{cfg.model.path}: trial model, random weights: every emotion below is meaningless", err=True)
    writer = None
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["file", "start", "end", "channel", "role", "emotion", "confidence",
                         "call_emotion", "call_confidence", "alerts", "model", *TRANSCRIPT_COLUMNS])
    failed = 0
    bar = tqdm(files, unit="file", disable=len(files) < 2 or not sys.stderr.isatty(), file=sys.stderr)
    for f in bar:
        with tempfile.TemporaryDirectory(prefix="callmood-analyze-") as tmp:
            try:
                audio = decode(f, Path(tmp) / "decoded.wav", cfg.audio.max_duration_s,
                               max_channels=cfg.audio.max_channels, timeout_s=cfg.audio.decode_timeout_s)
            except DecodeError as exc:
                failed += 1
                click.echo(f"{f}: {exc}", err=True)
                continue
            analysis, notes = analyze_audio(audio, model, cfg.audio, channel_roles, listening=listen)
        picked, alerts = evaluate(rules, analysis, _cli_call(f, queue, analysis.duration))
        fired = ";".join(a.rule for a in alerts)
        if writer:
            for s in analysis.segments:  # every cell as the exports write it: no formula runs
                writer.writerow(csv_row([f, s.start, s.end, s.channel, s.role, s.label,
                                         f"{s.confidence:.4f}", analysis.emotion,
                                         f"{analysis.confidence:.4f}", fired, made_by, *transcript_cells(s)]))
            continue
        tqdm.write(f"== {f} ({analysis.duration:.1f}s, {len(analysis.segments)} segments, "
                   f"{notes['skipped_s']:.1f}s of {notes['audio_s']:.1f}s track audio skipped as non-speech, vad={notes['vad']})"
                   + (" [trial model, random weights]" if model.trial else ""))
        tqdm.write(f"  audio: {audio_line(notes)}")  # rate, codec, resampler; NARROWBAND, PARTIAL
        for s in analysis.segments:
            tqdm.write(f"  {s.start:8.2f}-{s.end:8.2f}  {s.role:<8} {s.label:<10} {s.confidence:.3f}"
                       + (f"  {said_line(s)}" if s.text is not None else ""))
        verdict = f"{analysis.emotion} ({analysis.confidence:.3f})" if analysis.emotion else "no speech"
        scen = picked.scenario if picked else "-"
        tqdm.write(f"  verdict: {verdict}; scenario {scen}; alerts: {fired or 'none'}")
    if failed:
        sys.exit(1)


@main.group("rules")
def rules_group():
    """Check, and measure, scenario rules before they go live."""


@rules_group.command("check")
@config_option
@click.argument("path", required=False, type=click.Path())
def rules_check(config_path, path):
    """Validate the rules at PATH (default: rules.path): every error, with file and line."""
    from rules.check import check_rules

    cfg = _load(config_path)
    target = path or cfg.rules_path
    problems, summary = check_rules(target, _sink_names(cfg))
    for p in problems:
        click.echo(p, err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) in {target}")
    click.echo(summary)


@rules_group.command("backtest")
@config_option
@click.option("--rules", "candidate", type=click.Path(exists=True),
              help="Candidate rules (a directory or one file); default: the rules in force.")
@click.option("--since", default="7d", show_default=True, help="How far back: e.g. 90m, 12h, 7d.")
@click.option("--limit", type=int, default=20, show_default=True, help="Changed calls listed per rule.")
def rules_backtest(config_path, candidate, since, limit):
    """Replay stored segment results through the candidate rules (no model run)."""
    from plugin.flow.backtest import run_backtest
    from rules.yamlfile import RulesError

    cfg = _load(config_path)
    svc = _services(cfg)
    try:
        click.echo(run_backtest(svc.sessions, svc.clock, svc.rules, candidate, since, limit, _sink_names(cfg)))
    except RulesError as exc:
        raise click.ClickException(f"candidate rules: {exc}") from None
    except ValueError as exc:  # --since
        raise click.ClickException(str(exc)) from None
    finally:
        svc.close()


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def purge(config_path, dry_run):
    """Remove what the retention policy no longer keeps (`retention:` in the config), now."""
    cfg = _load(config_path)
    svc = _services(cfg)
    try:
        for kind in svc.purge(dry_run=dry_run):
            click.echo(kind.line(dry_run))
    finally:
        svc.close()


@main.command()
@config_option
@click.option("--customer", "customer_id", required=True, help="The customer id, as the helpdesk sends it.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def forget(config_path, customer_id, dry_run):
    """Remove every trace of one customer: calls, results, alerts, deliveries, recordings."""
    from plugin.store.forget import KINDS

    cfg = _load(config_path)
    svc = _services(cfg)
    try:
        removed = svc.forget(customer_id, dry_run=dry_run)
    except ValueError as exc:
        raise click.ClickException(f"--customer: {exc}") from None
    finally:
        svc.close()
    verb = "would be removed" if dry_run else "removed"
    if not removed["calls"] and not removed["alerts"]:
        click.echo(f"customer {customer_id!r}: nothing stored (no call, no alert)")
        return
    click.echo(f"customer {customer_id!r}: {verb}:")
    for kind in KINDS:
        click.echo(f"  {kind}: {removed[kind]}")


@main.command()
@config_option
@click.argument("source")
@click.option("--since", default="1d", show_default=True, help="How far back: e.g. 90m, 12h, 7d.")
def sync(config_path, source, since):
    """Store the calls SOURCE's API lists that never reached us (missed pushes)."""
    from plugin.flow.sync import SyncError, sync_source

    seconds = since_seconds(since)
    cfg = _load(config_path)
    try:
        cfg.require_env(f"sources.{source}")  # its API credentials
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    svc = _services(cfg)
    try:
        report = sync_source(cfg, svc.intake(), source, seconds)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the vendor's API: say what failed, in one line, without secrets
        raise click.ClickException(f"sync {source}: {scrub.text(f'{exc.__class__.__name__}: {exc}')}") from None
    finally:
        svc.close()
    click.echo(report.line())


def _check_listen(host: str, port: int) -> None:
    """Bind every address waitress will listen on (its own reading of host and port), and
    let go: a port in use, or an address not this machine's, ends `serve` at once."""
    import socket

    from waitress.adjustments import Adjustments

    try:
        for family, kind, proto, address in Adjustments(host=host, port=port).listen:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress binds
                probe.bind(address)
    except ValueError:  # waitress could not resolve host
        raise click.ClickException(f"cannot listen on {host}:{port}: not an address or a name of this "
                                   f"machine (server.host or --host)") from None
    except OSError as exc:
        raise click.ClickException(_cannot_listen(host, port, exc)) from None


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    """Why `serve` cannot take host:port, in one line that names it."""
    import errno

    why = {errno.EADDRINUSE: "the port is already in use (another CallMood, or another program: "
                             "stop it, or pick another port with --port or server.port)",
           errno.EACCES: "permission denied (ports below 1024 need privileges: pick another with --port "
                         "or server.port)",
           errno.EADDRNOTAVAIL: "that address is not one of this machine's (server.host or --host)"}
    reason = why.get(exc.errno) or exc.strerror or str(exc)
    return f"cannot listen on {host}:{port}: {reason}"


def _first_admin_command(config_path: str | None) -> str:
    """The command, as this user would type it, that makes the first admin."""
    exe = Path(sys.executable).parent / "callmood"
    try:
        exe = exe.relative_to(Path.cwd())
    except ValueError:
        pass
    cmd = f"{exe if exe.exists() else 'callmood'} users add admin --role admin"
    return cmd + (f" --config {config_path}" if config_path else "")


def _sink_names(cfg) -> dict[str, bool] | None:
    """Each configured sink and whether it messages people (then rule actions may not use it).
    With no sinks configured at all (the embedded defaults) alerts are only stored and
    shown; sink names cannot be checked against anything then."""
    from connectors.sinks import SINK_TYPES

    return {name: SINK_TYPES[sink.type].messaging for name, sink in cfg.sinks.items()} or None


@main.command("make-random-model")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--geometry", type=click.Choice(["tiny", "base", "large"]), default="tiny", show_default=True)
def make_random_model(dest, geometry):
    """Write an emotion2vec model directory with RANDOM weights (offline trials, tests, benchmarks).

    Its labels are meaningless: it exercises the real FunASR loading and inference path."""
    from plugin.model.modeldir import MARKER, make_trial_model_dir

    path = make_trial_model_dir(dest, geometry)  # marked (MARKER): whatever it makes says "trial model"
    click.echo(f"random-weight emotion2vec ({geometry}) written to {path}, marked as a trial model "
               f"({MARKER}); set model.path: {path} to use it")


def _cli_call(path: str, queue: str | None, duration: float) -> dict:
    # What a webhook's call gives rules and templates, for an unsaved call of this file.
    from plugin.flow.context import call_context
    from plugin.store.tables import Call

    return call_context(Call(source="cli", external_id=path, queue=queue,
                             recording_url=path, duration_s=duration, event={}))


def _parse_roles(spec: str | None) -> dict[int, str] | None:
    if not spec:
        return None
    try:
        pairs = [p.split("=", 1) for p in spec.split(",")]
        return {int(k): v.strip() for k, v in pairs}
    except ValueError:
        raise click.BadParameter("expected e.g. 0=agent,1=customer", param_hint="--roles") from None


class _Stop:
    """SIGTERM (systemd, docker stop) and Ctrl-C: stop cleanly, within a bounded time,
    whatever the process is doing when the signal comes.

    The handler only notes the signal (and, while waitress runs in the main thread, raises
    SystemExit there to end its loop): a handler runs between two bytecodes of the main
    thread, wherever that is, so it takes no lock and starts no thread (either could be
    held by the code it interrupted). A watcher thread, started beforehand, does the rest:
    it tells the runtime to take no more work, and if the process is still there
    ``worker.stop_grace_s`` + STOP_MARGIN_S after the signal it exits at once. A second
    signal exits at once too. Work still in flight after the grace is handed back by
    ``Runtime.stop``."""

    def __init__(self, grace_s: float) -> None:
        self.signal: int | None = None
        self.at = 0.0  # when the signal came (monotonic)
        self.grace_s = grace_s  # worker.stop_grace_s
        self.raise_in_main = False
        self._then: list = []

    def install(self) -> _Stop:
        threading.Thread(target=self._watch, name="callmood-stop", daemon=True).start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def then(self, action) -> None:
        """Run ``action`` (in the watcher thread) as soon as a signal has come."""
        self._then.append(action)

    def wait(self) -> None:
        # Sleep, not Event.wait: a handler may not set an Event the main thread waits on
        # (the Event's lock may be held by the very wait it interrupted). Short sleeps also
        # let the handler run soon when the kernel gave the signal to another thread.
        while self.signal is None:
            time.sleep(0.25)

    def grace_left(self) -> float:
        return max(0.0, self.grace_s - (time.monotonic() - self.at)) if self.signal is not None else self.grace_s

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            _hard_exit(f"second signal ({signal.Signals(signum).name}): exiting now")
        self.at, self.signal = time.monotonic(), signum
        if self.raise_in_main:
            raise SystemExit(0)

    def _watch(self) -> None:
        while self.signal is None:
            time.sleep(0.1)
        for action in self._then:
            try:
                action()
            except Exception:
                log.exception("while stopping")
        bound = self.grace_s + STOP_MARGIN_S
        time.sleep(max(0.0, self.at + bound - time.monotonic()))
        _hard_exit(f"did not stop within {bound:g}s of the signal (worker.stop_grace_s + {STOP_MARGIN_S:g}); "
                   f"exiting now")


# What a clean stop may take beyond the grace: waitress finishing its requests (5 s at
# most), handing work back, closing the database.
STOP_MARGIN_S = 10.0


def _hard_exit(why: str) -> None:
    """Leave now, from any thread, without taking a lock (logging's included)."""
    try:
        os.write(2, f"callmood: {why}\n".encode())
    except OSError:
        pass
    os._exit(1)


def _exit_now() -> None:
    """Leave at once after a clean stop. The worker, the scheduler and the database are
    closed by now; what is left is the interpreter tearing down every module FunASR
    imported, seconds of garbage collection that would delay every restart."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        stream.flush()  # sys.stdout may be redirected by a model load still under way
    os._exit(0)


# Accounts: `callmood users ...`, `callmood tokens ...` (plugin/web/auth/commands.py).
main.add_command(users_group)
main.add_command(tokens_group)
main.add_command(calls_group)
main.add_command(deliveries_group)
main.add_command(import_command)
main.add_command(report_command)
main.add_command(evaluate_command)
main.add_command(trial_receiver)

if __name__ == "__main__":
    main()
