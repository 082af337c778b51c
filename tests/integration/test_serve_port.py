"""`callmood serve` on a port that is taken exits at once, in one line naming the port
(issue 15, item 8), before the model loader, the scheduler or the worker start: a real
process, as an operator runs it, against a port this test holds open."""

import socket
import subprocess
import sys
import time

from tests.helpers import run_cli


def serve(cfg, *args, timeout=60) -> tuple[subprocess.CompletedProcess, float]:
    t = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "plugin.cli", "serve", "-c", str(cfg), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    return done, time.monotonic() - t


def test_a_taken_port_ends_serve_at_once_in_one_line(tmp_path):
    held = socket.create_server(("127.0.0.1", 0))  # listening: what another server does
    port = held.getsockname()[1]
    cfg = tmp_path / "config.yaml"
    # A model directory that is not there: were the loader started, it would log its failure.
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\nmodel: {{path: {tmp_path / 'no-model'}}}\n"
                   f"server: {{port: {port}}}\n")
    try:
        done, took = serve(cfg)
    finally:
        held.close()
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"config: {cfg}",
        (f"Error: cannot listen on 127.0.0.1:{port}: the port is already in use (another CallMood, or "
         f"another program: stop it, or pick another port with --port or server.port)")]
    assert done.stdout == ""
    assert took < 20, took  # was ~12 s of "cannot schedule new futures after interpreter shutdown"


def test_port_and_host_from_the_command_line_are_named(tmp_path):
    held = socket.create_server(("127.0.0.1", 0))
    port = held.getsockname()[1]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\nmodel: {{path: {tmp_path / 'no-model'}}}\n")
    try:
        r = run_cli("serve", "-c", cfg, "--host", "127.0.0.1", "--port", port)
    finally:
        held.close()
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith(f"Error: cannot listen on 127.0.0.1:{port}: the port is "
                                                f"already in use")


def test_an_address_that_is_not_this_machines(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\nmodel: {{path: {tmp_path / 'no-model'}}}\n")
    r = run_cli("serve", "-c", cfg, "--host", "192.0.2.1", "--port", "8080")  # TEST-NET-1 (RFC 5737)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == ("Error: cannot listen on 192.0.2.1:8080: that address is not one "
                                         "of this machine's (server.host or --host)")


def test_a_name_that_is_no_address(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\nserver: {{host: no-such-host.invalid}}\n")
    r = run_cli("serve", "-c", cfg)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == ("Error: cannot listen on no-such-host.invalid:8080: not an address or a "
                                         "name of this machine (server.host or --host)")
    assert not (tmp_path / "var").exists()  # said before the database was opened


def test_a_port_taken_after_the_check_still_ends_serve_in_one_line(tmp_path, monkeypatch):
    # Another program may take the port between the check and waitress's own bind.
    import plugin.cli

    monkeypatch.setattr(plugin.cli, "_check_listen", lambda host, port: None)
    held = socket.create_server(("127.0.0.1", 0))
    port = held.getsockname()[1]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\nmodel: {{path: {tmp_path / 'no-model'}}}\n")
    try:
        r = run_cli("serve", "-c", cfg, "--port", port)
    finally:
        held.close()
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith(f"Error: cannot listen on 127.0.0.1:{port}: the port is "
                                                f"already in use")
    assert "Traceback" not in r.stderr and "model" not in r.stderr  # the loader never started
