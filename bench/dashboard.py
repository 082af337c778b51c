"""The red-flag list and a call page at scale: server time over 100,000 calls and 10,000 alerts.

    .venv/bin/python bench/dashboard.py [--calls 100000] [--alerts 10000] [--db sqlite,postgres]
                                        [--rounds 7] [--limit-ms 300] [--markdown FILE]

Per database (an SQLite file in a temporary folder; PostgreSQL: a database of its own,
created and dropped, never anything else), the schema is migrated and seeded with bulk
INSERTs (bench/_dashboard_seed.py: calls over 90 days with their jobs, alerts with their
segments, feedback, deliveries, who handles the flagged customers). PostgreSQL then gets
ANALYZE, as autovacuum would give it after such a load; SQLite gets nothing (a deployed
one is never analysed either).

Then the app (plugin/web/app.py, no model loaded, the real clock) answers, through Flask's
test client in this process, as a supervisor with an API token:

  list          GET /dashboard                         the default view (newest alert first)
  filtered      GET /dashboard?severity=critical&queue=billing&from=<30 days ago>&to=<today>&sort=most
  phone search  GET /dashboard?q=<a flagged customer's phone number>
  late page     GET /dashboard?page=<the last>
  CSV           GET /dashboard.csv                     every row of the default view
  viewer list   GET /dashboard as a viewer (phone numbers masked)
  call page     GET /calls/<an alerted call>           with its segments, alerts, deliveries

Each is asked once to warm up, then --rounds times in interleaved rounds (each round asks
every request once), so whatever else the machine does lands on all of them alike. The
time is the server's: from the request entering the WSGI app to the whole body produced
(no network, no browser). Printed per request: median and range in ms, and PASS/FAIL
against --limit-ms (the median). Progress goes to stderr, the tables to stdout; --markdown
appends them with the command, machine, versions and date. Exit status 1 if one fails.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._dashboard_seed import seed  # noqa: E402
from bench._databases import database, postgres_problem  # noqa: E402
from bench._report import command_line, table_text  # noqa: E402

PG_DEFAULT = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000, help="calls to seed")
    ap.add_argument("--alerts", type=int, default=10_000, help="alerts to seed")
    ap.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    ap.add_argument("--postgres", default=os.environ.get("CALLMOOD_TEST_POSTGRES", PG_DEFAULT),
                    help="an admin URL: a database is created (and dropped) for the run")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved measured rounds")
    ap.add_argument("--limit-ms", type=float, default=300.0, help="PASS when the median is under this")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--markdown", default="", help="append the results to this Markdown file")
    args = ap.parse_args()
    if args.calls < 10 or args.alerts < 1 or args.alerts > args.calls or args.rounds < 1:
        ap.error("need --calls >= 10, 1 <= --alerts <= --calls and --rounds >= 1")
    bad = {d.strip() for d in args.db.split(",")} - {"sqlite", "postgres"}
    if bad:
        ap.error(f"--db: unknown {', '.join(sorted(bad))}; choose sqlite, postgres or both")
    return args


def run_one(name: str, args: argparse.Namespace, tmp: Path) -> dict:
    """Seed one database and time the requests; the result for the report."""
    from sqlalchemy import text

    from plugin import config as config_mod
    from plugin.core.clock import utcnow
    from plugin.services import build
    from plugin.web.app import create_app

    with database(args.postgres if name == "postgres" else None, tmp, prefix="callmood_bench_dashboard") as url:
        (tmp / "var").mkdir(mode=0o700, exist_ok=True)
        (tmp / "config.yaml").write_text("", encoding="utf-8")
        cfg = config_mod.load(tmp / "config.yaml", overrides={
            "data_dir": str(tmp / "var"), "database": {"url": url}, "reports": {"timezone": "Asia/Shanghai"}})
        svc = build(cfg)  # migrates the empty database
        try:
            t0 = time.perf_counter()
            facts = seed(svc.engine, args.calls, args.alerts, utcnow(), args.seed, progress)
            if svc.engine.dialect.name == "postgresql":
                with svc.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(text("ANALYZE"))
            seed_s = time.perf_counter() - t0
            counts = ", ".join(f"{n:,} {table}" for table, n in facts["counts"].items())
            progress(f"{name}: seeded in {seed_s:.1f} s: {counts}")
            timings = measure(create_app(services=svc), svc, facts, args)
        finally:
            svc.close()
    return {"db": name, "seed_s": seed_s, "facts": facts, "timings": timings}


def requests_for(facts: dict) -> list[tuple[str, str, str]]:
    """(label, role, path) of each request measured."""
    from urllib.parse import quote

    today = datetime.date.today()
    last_page = max(1, -(-facts["flagged_customers"] // 50))
    filtered = (f"/dashboard?severity=critical&queue={facts['queue']}&from={today - datetime.timedelta(days=30)}"
                f"&to={today}&sort=most")
    return [("list", "supervisor", "/dashboard"),
            ("filtered", "supervisor", filtered),
            ("phone search", "supervisor", f"/dashboard?q={quote(facts['phone'])}"),
            ("late page", "supervisor", f"/dashboard?page={last_page}"),
            ("CSV", "supervisor", "/dashboard.csv"),
            ("viewer list", "viewer", "/dashboard"),
            ("call page", "supervisor", f"/calls/{facts['alerted_call']}")]


def measure(app, svc, facts: dict, args: argparse.Namespace) -> list[tuple[str, str, list[float]]]:
    """(label, path, milliseconds of each measured round) per request."""
    clients = {}
    for role in ("supervisor", "viewer"):
        token = svc.accounts.create_token(f"bench-{role}", role)[1]
        clients[role] = app.test_client()
        clients[role].environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    todo = requests_for(facts)
    times: list[list[float]] = [[] for _ in todo]
    for rnd in range(args.rounds + 1):  # round 0 warms up (templates compiled, caches filled)
        for (label, role, path), mine in zip(todo, times):
            t = time.perf_counter()
            r = clients[role].get(path)
            body = r.get_data()  # the whole answer made
            ms = (time.perf_counter() - t) * 1000
            if r.status_code != 200 or not body:
                raise SystemExit(f"{label}: GET {path} answered {r.status_code}: {r.get_data(as_text=True)[:300]}")
            if rnd:
                mine.append(ms)
        if rnd:
            progress(f"round {rnd}/{args.rounds} done")
    return [(label, path, mine) for (label, _role, path), mine in zip(todo, times)]


def report(args: argparse.Namespace, results: list[dict]) -> tuple[str, bool]:
    ok = True
    lines = [f"## Red-flag list and call page: {args.calls:,} calls, {args.alerts:,} alerts, "
             f"{len(os.sched_getaffinity(0))} CPUs", ""]
    for res in results:
        f = res["facts"]
        lines += [f"### {res['db']}", "",
                  f"- seeded in {res['seed_s']:.0f} s: " + ", ".join(f"{n:,} {t}" for t, n in f["counts"].items())
                  + f"; {f['flagged_customers']:,} flagged customers", ""]
        rows = []
        for label, path, values in res["timings"]:
            m = statistics.median(values)
            passed = m < args.limit_ms
            ok &= passed
            rows.append([label, f"`{path}`", f"{m:.0f}", f"{min(values):.0f}–{max(values):.0f}",
                         "PASS" if passed else "FAIL"])
        lines += table_text(["request", "path", "median ms", "range ms", f"< {args.limit_ms:.0f} ms"], rows)
        lines.append("")
    lines.append(f"Server time through Flask's test client, {args.rounds} interleaved rounds after one warm-up, "
                 "as a supervisor (API token) unless the row says viewer.")
    return "\n".join(lines), ok


def write_markdown(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    models = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
              if ln.startswith("model name")]
    head = [f"## Red-flag list benchmark, {now}", "",
            f"- command: `{command_line()}`",
            f"- machine: {models[0] if models else platform.processor()}, {len(os.sched_getaffinity(0))} CPUs",
            f"- Python {platform.python_version()}, SQLAlchemy {version('sqlalchemy')}, Flask {version('flask')}, "
            f"SQLite {__import__('sqlite3').sqlite_version}", ""]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(head) + "\n" + text.replace("## ", "### ", 1).replace("\n### ", "\n#### ") + "\n")


def main() -> None:
    args = parse_args()
    os.environ["CALLMOOD_CONFIG"] = os.devnull  # no ./config.yaml of the checkout's
    names = [d.strip() for d in args.db.split(",") if d.strip()]
    if "postgres" in names:
        problem = postgres_problem(args.postgres)
        if problem:
            progress(f"PostgreSQL skipped: unreachable: {problem}")
            names.remove("postgres")
    if not names:
        sys.exit("no database to run on")
    results = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="callmood-bench-dashboard-") as tmp:
            os.chmod(tmp, 0o700)
            results.append(run_one(name, args, Path(tmp)))
    text, ok = report(args, results)
    print(text, flush=True)
    if args.markdown:
        write_markdown(Path(args.markdown), text)
        progress(f"appended to {args.markdown}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
