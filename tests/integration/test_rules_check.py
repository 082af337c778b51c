"""`callmood rules check`, run as an admin runs it."""

from pathlib import Path

from tests.helpers import run_cli

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "scenarios"


# config.example.yaml takes its secrets from the environment
ENV = {"CALLMOOD_GENERIC_SECRET": "s", "CRM_TOKEN": "t", "WECOM_ROBOT_KEY": "k"}


def check(*args):
    return run_cli("rules", "check", *args, env=ENV)


def test_shipped_rules_pass(tmp_path):
    r = check(SHIPPED)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{SHIPPED}: OK; 4 scenario(s)")
    # with the example config's sinks, sink names are checked too
    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    r = check("--config", example, SHIPPED)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "not checked" not in r.stdout


def test_every_problem_with_file_and_line(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(
        "default: true\n"
        "rules:\n"
        "  - name: r\n"
        "    when:\n"
        "      emotions: [angry, furious]\n"
        "      min_share: 1.2\n"
        "    summary: '{{ call.customer }}'\n"
        "    actions:\n"
        "      - sink: pager\n", encoding="utf-8")
    (rules / "b.yaml").write_text("rules:\n  - name: x\n    when: {emotions: [sad]\n", encoding="utf-8")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sinks:\n  crm: {type: rest, url: 'http://crm.example/x'}\n", encoding="utf-8")
    r = check("-c", cfg, rules)
    assert r.returncode == 1
    config_line, *lines = r.stderr.strip().splitlines()
    assert config_line == f"config: {cfg}"  # every command names the config it read
    assert f"{rules}/a.yaml:5: rules.0.when.emotions: unknown emotion 'furious'" in lines[0]
    assert lines[1] == f"{rules}/a.yaml:6: rules.0.when.min_share: Input should be less than or equal to 1"
    assert lines[2] == f"{rules}/a.yaml:7: rules.0.summary: bad template: 'dict object' has no attribute 'customer'"
    assert lines[3] == f"{rules}/a.yaml:9: rules.0.actions.0.sink: unknown sink 'pager' (configured: crm)"
    assert lines[4].startswith(f"{rules}/b.yaml:4: invalid YAML")
    assert lines[5] == f"Error: 5 problem(s) in {rules}"


def test_missing_path_is_one_line(tmp_path):
    r = check(tmp_path / "nope")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[1] == f"{tmp_path / 'nope'}: rules path does not exist"


def test_the_keys_that_listen_to_the_words_with_file_and_line(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(
        "default: true\n"
        "rules:\n"
        "  - name: r\n"
        "    when:\n"
        "      all:\n"
        "        - says: [投诉, '？！']\n"
        "          says_regex: ['(a+)+', '退款[']\n"
        "          tag_emotions: [furious]\n"
        "        - {emotions: [angry], events: [burp], min_mentions: 2}\n"
        "    summary: '{{ alert.details.keywords | join }}'\n"
        "  - name: q\n"
        "    when: {emotions: [angry]}\n"
        "    summary: '{{ alert.details.mentions }}'\n", encoding="utf-8")
    r = check(rules)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()[1:]
    a = f"{rules}/a.yaml"
    assert lines[0] == f"{a}:6: rules.0.when.all.0.says.1: keyword '？！' has nothing left to match once normalized " \
                       f"(spaces, punctuation and symbols are dropped)"
    assert lines[1].startswith(f"{a}:7: rules.0.when.all.0.says_regex.0: regular expression '(a+)+': nested")
    assert lines[2].startswith(f"{a}:7: rules.0.when.all.0.says_regex.1: bad regular expression '退款['")
    assert lines[3].startswith(f"{a}:8: rules.0.when.all.0.tag_emotions: unknown emotion 'furious'")
    assert lines[4].startswith(f"{a}:9: rules.0.when.all.1.events: unknown event 'burp'")
    assert lines[5].startswith(f"{a}:13: rules.1.summary: bad template: ") and "mentions" in lines[5]
    assert lines[6] == f"Error: 6 problem(s) in {rules}"

    (rules / "a.yaml").write_text("default: true\nrules:\n  - name: r\n"
                                  "    when: {says: [投诉, 12315], min_mentions: 2}\n", encoding="utf-8")
    r = check(rules)
    assert r.returncode == 0, r.stderr
    assert "1 rule(s); 1 of them listen to the words" in r.stdout
