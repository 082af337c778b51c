"""Secrets never stored, shown or logged: the database password in the `callmood`
command's output, tokens in the errors a job records. (The robot key in a delivery's
error: tests/integration/test_deliveries_hostile.py.)"""

from plugin.store.tables import Call, Job
from tests.conftest import T0
from tests.helpers import free_port, run_cli

PASSWORD = "hunter2-db-pw"


def cfg_file(tmp_path, url):
    p = tmp_path / "config.yaml"
    p.write_text(f"data_dir: {tmp_path / 'var'}\ndatabase: {{url: '{url}'}}\n", encoding="utf-8")
    return p


def test_migrate_prints_the_database_url_without_its_password(tmp_path, postgres_url):
    # PostgreSQL here trusts 127.0.0.1, so the password is sent along and ignored.
    url = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    assert PASSWORD in url
    r = run_cli("migrate", "-c", cfg_file(tmp_path, url))
    assert r.returncode == 0, r.stderr
    assert "database at newest schema: postgresql+psycopg2://postgres:***@127.0.0.1:5432/" in r.stdout
    assert PASSWORD not in r.stdout + r.stderr


def test_an_unreachable_database_is_reported_without_its_password(tmp_path):
    url = f"postgresql+psycopg2://callmood:{PASSWORD}@127.0.0.1:{free_port()}/callmood"
    r = run_cli("migrate", "-c", cfg_file(tmp_path, url))
    assert r.returncode != 0 and "cannot open database 'postgresql+psycopg2://callmood:***@127.0.0.1" in r.stderr
    assert PASSWORD not in r.stdout + r.stderr


def test_a_job_error_is_stored_and_shown_without_credentials(client, services):
    with services.sessions.begin() as s:
        call = Call(source="generic", external_id="c-1", recording_url="https://pbx.example/r.wav?token=tok-1",
                    customer_id="cust-42", event={}, received_at=T0)
        s.add(call)
        s.flush()
        services.jobs.enqueue(s, call.id)
        call_id = call.id
    job_id = services.jobs.claim("worker")
    error = ("ConnectionError: GET https://pbx.example/r.wav?token=tok-1 via http://proxy-user:pw-2@proxy:3128 "
             "failed; Authorization: Bearer abcdefghijkl")
    with services.sessions.begin() as s:
        assert services.jobs.fail(s, job_id, "worker", error, retry_in_s=None) == "failed"
    with services.sessions() as s:
        stored = [s.get(Job, job_id).last_error, s.get(Call, call_id).error]
    answer = client.get(f"/api/calls/{call_id}").text
    for text in stored + [answer]:
        assert "tok-1" not in text and "pw-2" not in text and "abcdefghijkl" not in text
    assert stored[0] == stored[1] == ("ConnectionError: GET https://pbx.example/r.wav?token=*** via "
                                      "http://proxy-user:***@proxy:3128 failed; Authorization: ***")
