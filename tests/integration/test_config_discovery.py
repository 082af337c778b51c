"""One config, found the same way by every command (issue 15, item 7): -c, else
$CALLMOOD_CONFIG, else ./config.yaml, else the defaults, as `make run` does; named in one
line on stderr. And the secrets of sinks resolved only where alerts are sent."""

from pathlib import Path

import pytest
import yaml

from tests.helpers import make_audio, run_cli

ROOT = Path(__file__).resolve().parents[2]
ONE_RULE = """\
default: true
rules:
  - name: anyone_angry
    when: {emotions: [angry], min_share: 0.5}
    summary: angry
"""
NONE_LINE = "config: none (built-in defaults: no --config, no $CALLMOOD_CONFIG, no ./config.yaml)"


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working directory of its own, as an operator's: no $CALLMOOD_CONFIG (tests/conftest.py
    sets one for every other test)."""
    monkeypatch.delenv("CALLMOOD_CONFIG", raising=False)
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rules_dir(where: Path, name: str) -> Path:
    d = where / name
    d.mkdir()
    (d / "general.yaml").write_text(ONE_RULE)
    return d


def write_config(path: Path, rules: Path, extra: str = "") -> Path:
    path.write_text(f"data_dir: {path.parent / 'var'}\nrules: {{path: {rules}}}\n{extra}")
    return path


def test_every_command_reads_config_yaml_in_the_working_directory(here):
    rules = rules_dir(here, "our-rules")
    write_config(here / "config.yaml", rules)
    r = run_cli("rules", "check")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == "config: ./config.yaml (found in the working directory)"
    assert r.stdout.startswith(f"{rules}: OK; 1 scenario(s)")  # not the shipped rules
    # The complaint of issue 15: backtest judged with the shipped rules while the service used these.
    r = run_cli("rules", "backtest", "--since", "1d")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == "config: ./config.yaml (found in the working directory)"
    assert (here / "var" / "callmood.db").exists()  # the data_dir of ./config.yaml
    r = run_cli("users", "list")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == "config: ./config.yaml (found in the working directory)"


def test_analyze_uses_the_model_of_config_yaml_instead_of_downloading_one(here):
    # Issue 15: `callmood analyze` ignored ./config.yaml and tried to download the hub's model.
    missing = here / "models" / "e2v"
    (here / "config.yaml").write_text(f"model: {{path: {missing}}}\n")
    r = run_cli("analyze", make_audio(here / "a", "wav_pcm", 16000, 1, 2.0))
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["config: ./config.yaml (found in the working directory)",
                                     f"Error: model.path '{missing}' is not a directory"]


def test_which_file_wins(here, monkeypatch):
    write_config(here / "config.yaml", rules_dir(here, "local"))
    from_env = write_config(here / "env.yaml", rules_dir(here, "env"))
    given = write_config(here / "given.yaml", rules_dir(here, "given"))
    monkeypatch.setenv("CALLMOOD_CONFIG", str(from_env))
    r = run_cli("rules", "check")
    assert r.stderr.splitlines()[0] == f"config: {from_env} (from $CALLMOOD_CONFIG)"
    assert r.stdout.startswith(f"{here / 'env'}: OK")
    r = run_cli("rules", "check", "-c", given)
    assert r.stderr.splitlines()[0] == f"config: {given}"
    assert r.stdout.startswith(f"{here / 'given'}: OK")


def test_no_file_anywhere_is_the_defaults_and_says_so(here):
    r = run_cli("rules", "check")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == NONE_LINE
    assert r.stdout.startswith(f"{ROOT / 'rules' / 'scenarios'}: OK")


def test_a_named_file_that_is_not_there_is_an_error_not_the_defaults(here, monkeypatch):
    monkeypatch.setenv("CALLMOOD_CONFIG", str(here / "nope.yaml"))
    r = run_cli("rules", "check")
    assert r.returncode == 1
    assert r.stderr.strip() == f"Error: {here / 'nope.yaml'}: cannot read config: No such file or directory"


def test_make_run_lets_the_command_find_the_config():
    # `make run` passes --config only when CONFIG is given: the command finds it as above,
    # so $CALLMOOD_CONFIG wins over ./config.yaml under make too.
    makefile = (ROOT / "Makefile").read_text()
    assert "\nCONFIG ?=\n" in makefile and "wildcard config.yaml" not in makefile
    assert "$(BIN)/callmood serve $(if $(CONFIG),--config $(CONFIG),)" in makefile


# --- secrets: resolved only when the sink that needs them is used -------------------------

CRM = """\
sinks:
  crm:
    type: rest
    url: "https://crm.example.com/api/tags"
    auth_header: "Bearer ${CRM_TOKEN}"
"""


def test_an_unset_sink_secret_does_not_stop_commands_that_never_send(here):
    cfg = write_config(here / "c.yaml", rules_dir(here, "r"), CRM)
    r = run_cli("rules", "check", "-c", cfg)
    assert r.returncode == 0, r.stderr
    r = run_cli("rules", "backtest", "-c", cfg)
    assert r.returncode == 0, r.stderr
    r = run_cli("users", "list", "-c", cfg)
    assert r.returncode == 0, r.stderr
    missing = here / "no-model"
    cfg.write_text(cfg.read_text() + f"model: {{path: {missing}}}\n")
    r = run_cli("analyze", "-c", cfg, make_audio(here / "a", "wav_pcm", 16000, 1, 2.0))
    assert r.stderr.splitlines()[-1] == f"Error: model.path '{missing}' is not a directory"  # past the config


@pytest.mark.parametrize("command", [["serve"], ["serve", "--no-worker"], ["worker"]])
def test_an_unset_sink_secret_stops_the_processes_that_send_at_once(here, command):
    cfg = write_config(here / "c.yaml", rules_dir(here, "r"), CRM)
    r = run_cli(*command, "-c", cfg)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"config: {cfg}",
        (f"Error: {cfg}: sinks.crm.auth_header: environment variable CRM_TOKEN is not set "
         f"(needed to send alerts through this sink)")]
    assert not (here / "var").exists()  # before the database, the model or the port


def test_an_unset_lookup_secret_stops_the_worker_not_the_receiver(here):
    lookup = ('identity:\n  lookup:\n    type: rest\n    url: "https://crm.example.com/c?phone={phone}"\n'
              '    headers: {Authorization: "Bearer ${CRM_TOKEN}"}\n')
    cfg = write_config(here / "c.yaml", rules_dir(here, "r"), lookup)
    r = run_cli("worker", "-c", cfg)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        f"Error: {cfg}: identity.lookup.headers.Authorization: environment variable CRM_TOKEN is not set "
        f"(needed to look up customer ids)")
    assert run_cli("rules", "check", "-c", cfg).returncode == 0


def test_the_runtime_refuses_to_send_with_an_unset_secret(tmp_path, monkeypatch):
    """Whatever builds the background work (not only the commands) meets the same check."""
    from plugin import config as config_mod
    from plugin.config import ConfigError
    from plugin.services import build

    monkeypatch.delenv("CRM_TOKEN", raising=False)
    data = {"data_dir": str(tmp_path / "var"), "rules": {"path": str(rules_dir(tmp_path, "r"))},
            **yaml.safe_load(CRM)}
    cfg = config_mod.from_dict(data, origin="test.yaml")
    assert cfg.sinks["crm"].auth_header == "Bearer ${CRM_TOKEN}"  # as written, until it is needed
    svc = build(cfg)
    try:
        with pytest.raises(ConfigError, match=r"^test.yaml: sinks.crm.auth_header: environment variable "
                                              r"CRM_TOKEN is not set"):
            svc.runtime()
        svc.runtime(worker=False, deliveries=False)  # receives only: needs no sink
    finally:
        svc.close()


def test_a_set_secret_is_used_and_other_sections_still_refuse_an_unset_one(here, monkeypatch):
    from plugin import config as config_mod
    from plugin.config import ConfigError

    cfg_path = write_config(here / "c.yaml", rules_dir(here, "r"), CRM)
    monkeypatch.setenv("CRM_TOKEN", "t0ken")
    cfg = config_mod.load(cfg_path)
    assert cfg.sinks["crm"].auth_header == "Bearer t0ken"
    cfg.require_env("sinks", "identity.lookup")  # nothing unset
    # Outside sinks, sources and identity.lookup an unset variable is refused when the file loads, as before.
    cfg_path.write_text("database: {url: '${NO_SUCH_SECRET}'}\n")
    with pytest.raises(ConfigError, match=r"database.url: environment variable NO_SUCH_SECRET is not set"):
        config_mod.load(cfg_path)


@pytest.mark.parametrize("sink,expected", [
    # A value that cannot be checked without its variable: the variable is what is missing.
    ('{type: rest, url: "${CRM_URL}"}', "sinks.crm.url: environment variable CRM_URL is not set"),
    # Anything else wrong in the same sink is said as it is.
    ('{type: rest, url: "https://crm.example.com/x", auth_header: "Bearer ${CRM_TOKEN}", bogus: 1}',
     "sinks.crm.bogus: unknown key (check the spelling against config.example.yaml)"),
])
def test_an_invalid_sink_with_an_unset_variable(here, sink, expected):
    from plugin import config as config_mod
    from plugin.config import ConfigError

    p = here / "c.yaml"
    p.write_text(f"sinks:\n  crm: {sink}\n")
    with pytest.raises(ConfigError) as err:
        config_mod.load(p)
    assert str(err.value) == f"{p}: {expected}"


SOURCE = """\
sources:
  generic:
    secret: "${GENERIC_SECRET}"
  twilio:
    enabled: false
    auth_token: "${TWILIO_TOKEN}"
"""
SOURCE_SAID = ("sources.generic.secret: environment variable GENERIC_SECRET is not set "
               "(needed to receive this source's calls and fetch its recordings)")


def test_an_unset_source_secret_stops_only_what_receives_or_fetches(here, monkeypatch):
    """Twilio's token or the generic source's secret is needed by `serve` (it checks the
    signatures) and `worker` (it fetches the recordings), not by `rules check` or `report`."""
    monkeypatch.delenv("GENERIC_SECRET", raising=False)
    monkeypatch.delenv("TWILIO_TOKEN", raising=False)
    cfg = write_config(here / "c.yaml", rules_dir(here, "r"), SOURCE)
    assert run_cli("rules", "check", "-c", cfg).returncode == 0
    r = run_cli("report", "-c", cfg, "--day", "2026-11-24")
    assert r.returncode == 0, r.stderr
    for command in (["serve"], ["worker"]):
        r = run_cli(*command, "-c", cfg)
        assert r.returncode == 1 and r.stderr.splitlines()[-1] == f"Error: {cfg}: {SOURCE_SAID}"
    r = run_cli("sync", "twilio", "-c", cfg)  # named by hand: its own secret is what is missing
    assert r.returncode == 1 and "sources.twilio.auth_token: environment variable TWILIO_TOKEN is not set" in r.stderr


def test_a_disabled_source_needs_no_secret(here, monkeypatch):
    from plugin import config as config_mod

    monkeypatch.setenv("GENERIC_SECRET", "s" * 32)
    monkeypatch.delenv("TWILIO_TOKEN", raising=False)
    cfg = config_mod.load(write_config(here / "c.yaml", rules_dir(here, "r"), SOURCE))
    assert "sources.twilio" not in cfg.enabled_sources() and "sources.generic" in cfg.enabled_sources()
    cfg.require_env("sinks", *cfg.enabled_sources())  # twilio is off: its unset token does not matter
    assert cfg.unset_env("sources.twilio") == ("sources.twilio.auth_token", "TWILIO_TOKEN")


def test_a_webhook_is_never_checked_against_a_secret_left_as_written(tmp_path, monkeypatch):
    """An app built without `serve`'s check still refuses the source: 503, nothing stored,
    and "${GENERIC_SECRET}" as written is no key anyone can sign with."""
    from plugin import config as config_mod
    from plugin.services import build
    from plugin.web.app import create_app
    from tests.conftest import signed

    monkeypatch.delenv("GENERIC_SECRET", raising=False)
    data = {"data_dir": str(tmp_path / "var"), "rules": {"path": str(rules_dir(tmp_path, "r"))},
            **yaml.safe_load(SOURCE)}
    svc = build(config_mod.from_dict(data, origin="test.yaml"))
    try:
        client = create_app(services=svc).test_client()
        r = client.post("/webhooks/generic", **signed({"call_id": "c1", "recording_url": "https://example.com/r.wav"},
                                                       secret="${GENERIC_SECRET}"))
        assert r.status_code == 503 and "GENERIC_SECRET" not in r.get_data(as_text=True)
        with svc.sessions() as s:
            from plugin.store.tables import Call
            assert s.query(Call).count() == 0
    finally:
        svc.close()
