#!/usr/bin/env python3
"""bench/flood.py — the harness of bench/storm and bench/replies (issue 11 §4, §5).

Both start like bench/run: N village leaders under 容县 450921 (each with a deputy, their AB角
backup), the release daemon with bench/jiaoying.bench.toml (policy "bench": SMS, ladder
["backup"]), the loopback gateway jiaoying-bench-sink, one red warning posted, and a wait
until all N first messages are at the sink and no send job is left. Then:

- storm: every deadline job is made due at once (`UPDATE jobs SET due_at = 0 WHERE kind =
  'deadline'`, behind the daemon's back: the N deadlines fall due in the same instant), and
  the clock runs until N call-outs are `escalated` (each to its deputy: a new call-out, its
  send and deadline jobs, a ledger entry). Figure: escalations/s.
- replies: jiaoying-bench-replies sends N signed inbound SMS replies ("收到", one per leader)
  to /hooks/bench/inbound from 64 clients; afterwards the `inbound` rows and the acknowledged
  call-outs are counted in the database (an answer is only counted once it is committed).

With INSTANCES > 1 (PostgreSQL only) that many daemons share the database: the warning is
posted to the first; all of them claim jobs and take replies (round-robin by client).
One JSON line per figure on stdout; progress on stderr; logs in bench/out/.
"""
import csv
import datetime
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
# BENCH_BIN_DIR=target/debug (with BENCH_NO_BUILD=1) tries the script itself on debug builds:
# its figures are then not figures.
BINS = os.path.join(ROOT, os.environ.get("BENCH_BIN_DIR", "target/release"))
BIN = os.environ.get("BENCH_BIN") or os.path.join(BINS, "jiaoying")  # a before/after pair (bench/README.md)
SINK = os.path.join(BINS, "jiaoying-bench-sink")
LOAD = os.path.join(BINS, "jiaoying-bench-replies")
CONFIG = "bench/jiaoying.bench.toml"
PG = "postgres://postgres@127.0.0.1:5432"
SECRET = "bench-secret"
TOKEN = "bench-token"


def log(msg):
    print(f"[{NAME}] {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"bench/{NAME}: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def git():
    try:
        g = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return g + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def psql(db, sql):
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", db, "-w",
                        "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True)
    if r.returncode != 0:
        die(f"psql: {r.stderr.strip()}")
    return r.stdout.strip()


class Db:
    """The test harness's own view of the daemon's database (never through the daemon)."""

    def __init__(self, backend, work):
        self.backend = backend
        if backend == "sqlite":
            self.path = os.path.join(work, "jy.db")
            self.url = f"sqlite://{self.path}"
            self.name = None
        else:
            self.name = f"jybench_{NAME}_{time.strftime('%Y%m%d%H%M%S')}_{os.getpid()}"
            psql("postgres", f'CREATE DATABASE "{self.name}"')
            self.url = f"{PG}/{self.name}"
        self.conn = None
        self.calls = 0  # the harness's own transactions (psql runs), subtracted from commits

    def scalar(self, sql):
        if self.backend == "sqlite":
            if self.conn is None:
                self.conn = sqlite3.connect(self.path, timeout=30)
            return self.conn.execute(sql).fetchone()[0]
        self.calls += 1
        out = psql(self.name, sql)
        return int(out) if out.lstrip("-").isdigit() else out

    def execute(self, sql):
        if self.backend == "sqlite":
            if self.conn is None:
                self.conn = sqlite3.connect(self.path, timeout=30)
            self.conn.execute(sql)
            self.conn.commit()
        else:
            psql(self.name, sql)

    def drop(self):
        if self.conn is not None:
            self.conn.close()
        if self.name:
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-w", "-X",
                            "-q", "-c", f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'],
                           capture_output=True)


def generate(work, n):
    """bench/run's county, plus a deputy (the backup) for every village leader."""
    townships = max(100, -(-n // 799))
    codes = {}
    with open(os.path.join(work, "regions.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["code", "name", "level", "parent", "lat", "lon"])
        w.writerow(["450900", "玉林市", "city", "", "22.654", "110.181"])
        w.writerow(["450921", "容县", "county", "450900", "22.857", "110.558"])
        for t in range(townships):
            w.writerow([f"450921{101 + t:03d}", f"测试镇{t + 1}", "township", "450921", "22.6", "110.3"])
        for i in range(1, n + 1):
            t, k = (i - 1) % townships, (i - 1) // townships
            codes[i] = f"450921{101 + t:03d}{201 + k:03d}"
        for i in sorted(codes, key=lambda i: codes[i]):
            w.writerow([codes[i], f"测试村{i}", "village", codes[i][:9], "22.6", "110.3"])
    with open(os.path.join(work, "contacts.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["key", "name", "phone", "email", "role", "region", "backup", "superior", "channels"])
        for i in range(1, n + 1):
            w.writerow([f"b-{i}", f"测试{i}", f"1700{i:07d}", "", "village_leader", codes[i], f"d-{i}", "", ""])
            w.writerow([f"d-{i}", f"副{i}", f"1701{i:07d}", "", "village_deputy", codes[i], "", "", ""])
    now = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).replace(microsecond=0)
    ident = f"jiaoying-{NAME}-{now.strftime('%Y%m%d%H%M%S')}-{os.getpid()}"
    with open(os.path.join(work, "cap.xml"), "w", encoding="utf-8") as f:
        f.write(f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{ident}</identifier><sender>bench@jiaoying.test</sender><sent>{now.strftime('%Y-%m-%dT%H:%M:%S+08:00')}</sent>
  <status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
  <info><language>zh-CN</language><category>Met</category><event>暴雨红色预警</event>
    <urgency>Immediate</urgency><severity>Extreme</severity><certainty>Likely</certainty>
    <headline>基准测试暴雨红色预警</headline><instruction>立即转移</instruction>
    <area><areaDesc>容县</areaDesc><geocode><valueName>GB2260</valueName><value>450921</value></geocode></area>
  </info>
</alert>
""")


def alive(p):
    return p.poll() is None


def wait_until(what, secs, f, procs=()):
    deadline = time.time() + secs
    while True:
        v = f()
        if v:
            return v
        for p in procs:
            if not alive(p):
                die(f"a daemon died while waiting for {what} (see bench/out/)")
        if time.time() > deadline:
            die(f"timed out after {secs} s waiting for {what}")
        time.sleep(0.02)


def stop(p):
    if p is None or not alive(p):
        return
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def sink_stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.load(r)


def run_backend(backend, n, instances, body):
    work = tempfile.mkdtemp(prefix=f"jiaoying-{NAME}.")
    procs, sink, db = [], None, None
    tag = f"{NAME}-{backend}" + (f"-x{instances}" if instances > 1 else "")
    try:
        log(f"{backend}: generating {n} leaders and {n} deputies in {work}")
        generate(work, n)
        sink_out = open(os.path.join(work, "sink.out"), "w")
        sink = subprocess.Popen([SINK, "--bind", "127.0.0.1:0"], stdout=sink_out,
                                stderr=open(os.path.join(OUT, f"{tag}-sink.log"), "w"),
                                env={**os.environ, "BENCH_SINK_SECRET": SECRET})
        first = wait_until("the sink's address", 10,
                           lambda: open(os.path.join(work, "sink.out")).readline().strip())
        sink_port = int(first.rsplit(":", 1)[1])
        db = Db(backend, work)
        ports = [free_port() for _ in range(instances)]
        env = {**os.environ,
               "BENCH_SINK_SECRET": SECRET,
               "JIAOYING_GATEWAYS__BENCH__URL": f"http://127.0.0.1:{sink_port}/send",
               "JIAOYING_DATABASE__URL": db.url,
               "JIAOYING_ANSWER_SECRET": "bench",
               "JIAOYING_FEED_TOKEN": TOKEN,
               # A worker that is idle sleeps until the next job or this long: the storm's
               # deadlines are made due behind its back, so it notices them within 50 ms.
               "JIAOYING_DISPATCH__POLL": os.environ.get("STORM_POLL", "50ms"),
               "RUST_LOG": os.environ.get("BENCH_LOG", "warn")}
        setup = open(os.path.join(OUT, f"{tag}-setup.log"), "w")
        for step in (["migrate"], ["import", "regions", f"{work}/regions.csv"],
                     ["import", "contacts", f"{work}/contacts.csv"]):
            e = {**env, "JIAOYING_HTTP__BIND": f"127.0.0.1:{ports[0]}",
                 "JIAOYING_HTTP__PUBLIC_URL": f"http://127.0.0.1:{ports[0]}"}
            if subprocess.run([BIN, "--config", CONFIG, *step], env=e, stdout=setup, stderr=setup,
                              stdin=subprocess.DEVNULL, cwd=ROOT).returncode != 0:
                die(f"jiaoying {' '.join(step)} failed (see bench/out/{tag}-setup.log)")
        for k, port in enumerate(ports):
            e = {**env, "JIAOYING_HTTP__BIND": f"127.0.0.1:{port}",
                 "JIAOYING_HTTP__PUBLIC_URL": f"http://127.0.0.1:{port}"}
            procs.append(subprocess.Popen([BIN, "--config", CONFIG, "serve"], env=e, cwd=ROOT,
                                          stdin=subprocess.DEVNULL,
                                          stdout=open(os.path.join(OUT, f"{tag}-daemon{k}.log"), "w"),
                                          stderr=subprocess.STDOUT))

        def ready(port):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        for port in ports:
            wait_until("/readyz", 30, lambda: ready(port), procs)
        log(f"{backend}: {instances} daemon(s) ready; posting the warning")
        req = urllib.request.Request(f"http://127.0.0.1:{ports[0]}/api/v1/warnings",
                                     data=open(os.path.join(work, "cap.xml"), "rb").read(),
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/cap+xml"}, method="POST")
        snap = pg_snapshot(db) if backend == "postgres" and COST else None
        t0 = time.time()
        with urllib.request.urlopen(req, timeout=60) as r:
            if r.status != 202:
                die(f"POST /api/v1/warnings answered {r.status}")
        wait_until(f"{n} first messages at the sink", 300,
                   lambda: sink_stats(sink_port)["count"] >= n, procs)
        s = sink_stats(sink_port)
        fanout_s = s["last_at"] - t0
        wait_until("the send jobs done", 120,
                   lambda: db.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'send'") == 0, procs)
        wait_until(f"{n} deadline jobs", 120,
                   lambda: db.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'deadline'") == n, procs)
        if instances > 1:
            emit({"figure": "fanout", "backend": backend, "n": n, "instances": instances,
                  "seconds": round(fanout_s, 3), "messages_per_s": round(n / fanout_s, 1)})
        if snap:
            after = pg_snapshot(db)
            pg_cost("fanout", n, snap, after, backend, instances)
            snap = after
        # BENCH_PERF=1: the first daemon is profiled during the storm or the replies (perf
        # record -g), and its hottest symbols go to bench/out/perf-TAG.txt.
        perf = None
        if os.environ.get("BENCH_PERF"):
            if not shutil.which("perf"):
                die("BENCH_PERF needs perf (apt-get install linux-perf)")
            perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(procs[0].pid),
                                     "-o", os.path.join(OUT, f"perf-{tag}.data")],
                                    stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(OUT, f"perf-{tag}.log"), "w"))
            time.sleep(0.5)
        body(backend, n, instances, db, ports, sink_port, procs, tag)
        if perf:
            perf.send_signal(2)
            perf.wait(timeout=60)
            report = subprocess.run(["perf", "report", "-i", os.path.join(OUT, f"perf-{tag}.data"),
                                     "--no-children", "--sort", "dso,symbol", "--percent-limit", "0.7",
                                     "--stdio"], capture_output=True, text=True).stdout
            with open(os.path.join(OUT, f"perf-{tag}.txt"), "w") as f:
                f.writelines(l + "\n" for l in report.splitlines() if l[:1] == " " and l.strip()[:1].isdigit())
            log(f"{backend}: profile summary in bench/out/perf-{tag}.txt")
        if snap:
            pg_cost(NAME, n, snap, pg_snapshot(db), backend, instances)
    finally:
        for p in procs:
            stop(p)
        stop(sink)
        if db is not None:
            db.drop()
        shutil.rmtree(work, ignore_errors=True)


TABLES = ("callouts", "jobs", "attempts", "ledger", "ledger_head", "inbound", "acks", "callout_joins")


def pg_snapshot(db):
    """PostgreSQL's own counters for the bench database: commits, rows written per table,
    bytes per table (heap + indexes + TOAST). Read after the backends flushed their stats
    (PostgreSQL 15 flushes an idle backend's counters within 10 s)."""
    time.sleep(11)
    db.calls += 1
    commits = int(psql(db.name, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
    rows = {}
    for line in psql(db.name, "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del, "
                              "pg_total_relation_size(relid) FROM pg_stat_user_tables").splitlines():
        name, w, b = line.split("|")
        rows[name] = (int(w), int(b))
    return {"commits": commits, "calls": db.calls, "rows": rows}


def pg_cost(phase, n, a, b, backend, instances):
    """What a phase cost PostgreSQL per call-out (or per escalation, per reply)."""
    commits = (b["commits"] - a["commits"]) - (b["calls"] - a["calls"])
    written = {t: b["rows"].get(t, (0, 0))[0] - a["rows"].get(t, (0, 0))[0] for t in TABLES}
    grown = {t: b["rows"].get(t, (0, 0))[1] - a["rows"].get(t, (0, 0))[1] for t in TABLES}
    emit({"figure": "pg_cost", "phase": phase, "backend": backend, "n": n, "instances": instances,
          "commits_per_item": round(commits / n, 3),
          "rows_written_per_item": round(sum(written.values()) / n, 2),
          "rows_written_per_item_by_table": {t: round(v / n, 2) for t, v in written.items() if v},
          "bytes_per_item": round(sum(grown.values()) / n, 1),
          "bytes_per_item_by_table": {t: round(v / n, 1) for t, v in grown.items() if v}})


def emit(fig):
    fig["git"] = GIT
    print(json.dumps(fig, ensure_ascii=False, separators=(",", ":")), flush=True)


def storm(backend, n, instances, db, ports, sink_port, procs, tag):
    escalated = "SELECT COUNT(*) FROM callouts WHERE state = 'escalated'"
    before = db.scalar(escalated)
    if before:
        die(f"{before} call-outs escalated before the storm")
    log(f"{backend}: {n} deadlines due now")
    t0 = time.time()
    db.execute("UPDATE jobs SET due_at = 0 WHERE kind = 'deadline'")
    t_due = time.time()
    first = [None]

    def done():
        k = db.scalar(escalated)
        if k and first[0] is None:
            first[0] = time.time()
        return k >= n

    wait_until(f"{n} escalations", 300, done, procs)
    t1 = time.time()
    children = db.scalar("SELECT COUNT(*) FROM callouts WHERE parent_id IS NOT NULL")
    twice = db.scalar("SELECT COUNT(*) FROM (SELECT parent_id FROM callouts WHERE parent_id IS NOT NULL "
                      "GROUP BY parent_id HAVING COUNT(*) > 1) t")
    entries = db.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'callout.escalated'")
    if children != n or twice or entries != n:
        die(f"escalated {n}, but {children} new call-outs, {twice} escalated twice, {entries} ledger entries")
    seconds = t1 - t0
    emit({"figure": "storm", "backend": backend, "n": n, "instances": instances,
          "seconds": round(seconds, 3), "escalations_per_s": round(n / seconds, 1),
          "first_escalation_ms": round((first[0] - t0) * 1000, 1),
          "update_ms": round((t_due - t0) * 1000, 1)})


def replies(backend, n, instances, db, ports, sink_port, procs, tag):
    conc = int(os.environ.get("REPLIES_CONCURRENCY", "64"))
    log(f"{backend}: {n} replies from {conc} clients")
    results = []
    # Each daemon gets its share of the clients and phones (1 instance: all of them).
    per = -(-n // instances)
    loads = []
    for k, port in enumerate(ports):
        lo = k * per
        count = min(per, n - lo)
        loads.append(subprocess.Popen(
            [LOAD, "--url", f"http://127.0.0.1:{port}/hooks/bench/inbound", "--n", str(count),
             "--offset", str(lo), "--concurrency", str(max(1, conc // instances))],
            stdout=subprocess.PIPE, stderr=open(os.path.join(OUT, f"{tag}-load{k}.log"), "w"),
            env={**os.environ, "BENCH_SINK_SECRET": SECRET}, text=True))
    for p in loads:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            die(f"jiaoying-bench-replies failed (see bench/out/{tag}-load*.log)")
        results.append(json.loads(out.strip().splitlines()[-1]))
    inbound = db.scalar("SELECT COUNT(*) FROM inbound WHERE kind = 'sms'")
    acked = db.scalar("SELECT COUNT(*) FROM callouts WHERE acked_at IS NOT NULL")
    # Replies applied in one unit of work share its instant: distinct instants are (about) the
    # transactions the replies took (group commit on SQLite; one per reply on PostgreSQL).
    units = db.scalar("SELECT COUNT(DISTINCT received_at) FROM inbound WHERE kind = 'sms'")
    r = results[0]
    if instances > 1:
        secs = max(x["seconds"] for x in results)
        r = {"requests": sum(x["requests"] for x in results), "ok": sum(x["ok"] for x in results),
             "failed": sum(x["failed"] for x in results), "seconds": secs,
             "replies_per_s": round(sum(x["requests"] for x in results) / secs, 1),
             "p50_ms": max(x["p50_ms"] for x in results), "p99_ms": max(x["p99_ms"] for x in results),
             "max_ms": max(x["max_ms"] for x in results), "last_error": None}
    emit({"figure": "replies", "backend": backend, "n": n, "instances": instances,
          "clients": conc, "ok": r["ok"], "failed": r["failed"], "seconds": r["seconds"],
          "replies_per_s": r["replies_per_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
          "max_ms": r["max_ms"], "inbound_rows": inbound, "acknowledged": acked,
          "replies_per_commit": round(n / max(units, 1), 1)})
    if r["failed"] or inbound != n or acked != n:
        die(f"{r['failed']} replies failed ({r.get('last_error')}); {inbound} inbound rows and "
            f"{acked} acknowledged call-outs for {n} replies")


def main():
    global NAME, GIT
    NAME = sys.argv[1]
    args = sys.argv[2:]
    usage = f"usage: bench/{NAME} [N] [sqlite|postgres|both] [INSTANCES]   (defaults: 10000 both 1)"
    if len(args) > 3:
        die(usage)
    n = args[0] if args else "10000"
    mode = args[1] if len(args) > 1 else "both"
    instances = args[2] if len(args) > 2 else "1"
    if not n.isdigit() or int(n) < 1 or not instances.isdigit() or int(instances) < 1:
        die(usage)
    backends = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}.get(mode)
    if backends is None:
        die(usage)
    n, instances = int(n), int(instances)
    if instances > 1 and "sqlite" in backends:
        die("several instances need PostgreSQL (SQLite has one writer): use postgres")
    if n > 899 * 799:
        die(f"N must be at most {899 * 799}")
    os.makedirs(OUT, exist_ok=True)
    GIT = git()
    if os.environ.get("BENCH_NO_BUILD") != "1":
        log("building release binaries (log: bench/out/build.log)")
        with open(os.path.join(OUT, "build.log"), "w") as f:
            if subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, stdout=f,
                              stderr=subprocess.STDOUT).returncode != 0:
                die("cargo build --release --bins failed (see bench/out/build.log)")
    for b in (BIN, SINK, LOAD):
        if not os.access(b, os.X_OK):
            die(f"{b} not built")
    body = {"storm": storm, "replies": replies}[NAME]
    for backend in backends:
        run_backend(backend, n, instances, body)


NAME, GIT = "flood", "unknown"
# BENCH_PG_COST=1: also what each phase cost PostgreSQL (adds 3 × 11 s of waiting for its stats).
COST = os.environ.get("BENCH_PG_COST") == "1"
if __name__ == "__main__":
    main()
