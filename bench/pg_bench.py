#!/usr/bin/python3
"""Strata's postgres engine against pgBackRest, on the same PostgreSQL 15
cluster in the same run (run as root; installs Debian's pgbackrest if
missing):

  - full backup: create-db-snapshot -> available vs pgbackrest backup --type=full;
  - a pgbench run that updates about 1% of pgbench_accounts, then the
    incremental: Strata's second snapshot vs pgbackrest backup --type=incr;
  - repository size after full + incremental (backups and WAL apart);
  - restore to "accepting connections, out of recovery", both polled with
    psql: restore-db-instance-from-db-snapshot (and, reported beside it,
    until `available`) vs pgbackrest restore --type=immediate + pg_ctl
    start + promotion;
  - WAL archiving throughput: a load flat out, then how long each tool needs
    after the load ends to hold all of its WAL (Strata: LatestRestorableTime
    passes the end; pgBackRest: the last segment is in its archive).

  bench/pg_bench.py [--stratad build/bin/stratad] [--scale 70] [--wal-seconds 60]
"""
import argparse
import datetime
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
USER, PASSWORD, DB = "benchuser", "bench-pass-123", "bench"
STANZA = "bench"
POLL = 0.05


def run(cmd, as_postgres=False, check=True, env=None, capture=True, timeout=None):
    if as_postgres:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    p = subprocess.run(cmd, env=env, text=True, timeout=timeout,
                       stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def timed(fn):
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def du(path):
    if not os.path.exists(path):
        return 0
    return int(run(["du", "-sb", path]).stdout.split()[0])


def mib(n):
    return n / 1048576


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="strata-pgbench-")
        os.chmod(self.tmp, 0o711)
        self.data = os.path.join(self.tmp, "data")
        self.pgbr = os.path.join(self.tmp, "pgbackrest")
        self.server = None
        self.restored_pgdata = None
        self.results = {}
        self.notes = []

    # --- plumbing ---

    def rds(self):
        case = harness.StrataTestCase()
        case.server, case.data_dir, case.tmp = self.server, self.data, self.tmp
        return case.client()

    def describe(self, name):
        return self.client.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]

    def accepting(self, inst):
        """True once the instance's server takes connections and is out of recovery."""
        port = (inst.get("Endpoint") or {}).get("Port")
        if not port:
            return False
        p = run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", DB, "-Atqc",
                 "SELECT pg_is_in_recovery()"], env=dict(self.pgenv(), PGCONNECT_TIMEOUT="2"), check=False)
        return p.returncode == 0 and p.stdout.strip() == "f"

    def wait_instance(self, name, timeout=1800, transitions=None, accepting_at=None):
        """Polls until `name` is available; with accepting_at (a dict), also
        records in it when its server first took connections out of recovery."""
        deadline = time.monotonic() + timeout
        t0, last = time.monotonic(), None
        while time.monotonic() < deadline:
            inst = self.describe(name)
            status = inst["DBInstanceStatus"]
            if transitions is not None and status != last:
                transitions.append((round(time.monotonic() - t0, 2), status))
                last = status
            if accepting_at is not None and "s" not in accepting_at and self.accepting(inst):
                accepting_at["s"] = time.monotonic() - t0
            if status == "available":
                return
            if status in ("failed", "incompatible-restore"):
                raise RuntimeError(f"{name} is {status}:\n{self.server.tail()}")
            time.sleep(POLL)
        raise RuntimeError(f"{name} not available after {timeout} s")

    def pgenv(self):
        return dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="10")

    def sql(self, query, db=DB):
        p = run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", db, "-v",
                 "ON_ERROR_STOP=1", "-Atqc", query], env=self.pgenv())
        return p.stdout.strip()

    def pgbench(self, *args):
        return run([f"{PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, *args, DB],
                   env=self.pgenv()).stdout

    def pgbackrest(self, *args, **kw):
        return run(["pgbackrest", f"--config={self.pgbr}/pgbackrest.conf", f"--stanza={STANZA}", *args],
                   as_postgres=True, **kw)

    def restorable(self):
        lrt = self.describe("pg").get("LatestRestorableTime")
        return lrt.timestamp() if lrt else 0.0

    def archived_segments(self):
        """WAL segment names (24 hex digits) in pgBackRest's archive."""
        names = set()
        for d in glob.glob(os.path.join(self.pgbr, "repo", "archive", STANZA, "*", "*")):
            if os.path.isdir(d):
                names.update(f[:24] for f in os.listdir(d) if len(f) > 24 and f[24] == "-")
        return names

    def wait_strata_until(self, t, timeout=1800):
        deadline = time.monotonic() + timeout
        while self.restorable() < t:
            if time.monotonic() > deadline:
                raise RuntimeError("LatestRestorableTime did not advance")
            time.sleep(POLL)

    def wait_archived(self, segment, timeout=1800):
        deadline = time.monotonic() + timeout
        while segment not in self.archived_segments():
            if time.monotonic() > deadline:
                raise RuntimeError(f"segment {segment} never reached pgBackRest's archive")
            time.sleep(POLL)

    def settle(self):
        """Lets both tools catch up with all WAL so far, then checkpoints."""
        seg = self.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        self.sql("SELECT pg_switch_wal()")
        now = time.time()
        self.wait_archived(seg)
        self.wait_strata_until(now)
        self.sql("CHECKPOINT")

    def page_hashes(self):
        """crc32 of every 8 KiB page of the relation files (after a checkpoint)."""
        self.sql("CHECKPOINT")
        out = {}
        for root, _, files in os.walk(os.path.join(self.pgdata, "base")):
            for f in files:
                path = os.path.join(root, f)
                try:
                    with open(path, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                out[path] = [zlib.crc32(data[i:i + 8192]) for i in range(0, len(data), 8192)]
        return out

    # --- setup ---

    def start(self):
        harness.STRATAD = os.path.abspath(self.args.stratad)
        self.server = harness.Stratad(self.data).start()
        self.client = self.rds()
        self.client.create_db_instance(DBInstanceIdentifier="pg", DBInstanceClass="db.t3.micro", Engine="postgres",
                                       MasterUsername=USER, MasterUserPassword=PASSWORD, DBName=DB,
                                       BackupRetentionPeriod=1)
        self.wait_instance("pg")
        inst = self.describe("pg")
        self.port = inst["Endpoint"]["Port"]
        self.inst_dir = os.path.join(self.data, "instances", inst["DbiResourceId"])
        self.pgdata = os.path.join(self.inst_dir, "pgdata")
        self.sockdir = os.path.join(self.inst_dir, "run")
        while not self.restorable():
            time.sleep(POLL)

        # pgBackRest: its own directory, owned by the server's OS user.
        for d in ("repo", "spool", "lock", "log"):
            os.makedirs(os.path.join(self.pgbr, d))
        self.pgbr_conf = {
            "global": [
                ("repo1-path", f"{self.pgbr}/repo"),
                ("repo1-retention-full", "2"),
                ("compress-type", "zst"),
                ("compress-level", "1"),
                ("process-max", "2"),
                ("start-fast", "y"),
                ("archive-async", "y"),
                ("spool-path", f"{self.pgbr}/spool"),
                ("lock-path", f"{self.pgbr}/lock"),
                ("log-path", f"{self.pgbr}/log"),
                ("log-level-console", "warn"),
                ("log-level-file", "info"),
            ],
            STANZA: [
                ("pg1-path", self.pgdata),
                ("pg1-port", str(self.port)),
                ("pg1-socket-path", self.sockdir),
                ("pg1-user", USER),
            ],
        }
        with open(os.path.join(self.pgbr, "pgbackrest.conf"), "w") as f:
            for section, kvs in self.pgbr_conf.items():
                f.write(f"[{section}]\n" + "".join(f"{k}={v}\n" for k, v in kvs) + "\n")
        run(["chown", "-R", "postgres:postgres", self.pgbr])
        os.chmod(self.pgbr, 0o700)
        self.pgbackrest("stanza-create")
        archive_command = f"pgbackrest --config={self.pgbr}/pgbackrest.conf --stanza={STANZA} archive-push %p"
        self.sql("ALTER SYSTEM SET archive_mode = on")
        self.sql(f"ALTER SYSTEM SET archive_command = '{archive_command}'")
        # Strata's supervisor restarts a server that is down, racing pg_ctl's
        # own start: whichever wins, the server comes back with the settings.
        # When the supervisor wins, pg_ctl waits for a server of its own until
        # its timeout (once 300 s): kept short, the loop below does the waiting.
        t = time.monotonic()
        run([f"{PG_BIN}/pg_ctl", "restart", "-w", "-t", "30", "-s", "-m", "fast", "-D", self.pgdata, "-l",
             os.path.join(self.inst_dir, "postgres.log")], as_postgres=True, check=False)
        while True:
            p = run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", DB, "-Atqc",
                     "SHOW archive_mode"], env=self.pgenv(), check=False)
            if p.returncode == 0 and p.stdout.strip() == "on":
                break
            if time.monotonic() - t > 300:
                raise RuntimeError("the server did not come back with archive_mode on")
            time.sleep(0.2)
        self.results["restart_s"] = time.monotonic() - t
        self.wait_instance("pg")
        self.pgbackrest("check")
        self.versions = {
            "postgres": self.sql("SHOW server_version"),
            "pgbackrest": run(["pgbackrest", "version"]).stdout.strip(),
        }

    def load(self):
        t = timed(lambda: self.pgbench("-i", "-q", "-s", str(self.args.scale)))
        self.results["pgbench_init_s"] = t
        self.results["db_bytes"] = int(self.sql("SELECT pg_database_size(current_database())"))
        self.results["pgdata_bytes"] = du(self.pgdata) - du(os.path.join(self.pgdata, "pg_wal"))
        self.settle()

    # --- measurements ---

    def strata_snapshot(self, name):
        def go():
            self.client.create_db_snapshot(DBInstanceIdentifier="pg", DBSnapshotIdentifier=name)
            while True:
                snap = self.client.describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"][0]
                if snap["Status"] != "creating":
                    break
                time.sleep(POLL)
            if snap["Status"] != "available":
                raise RuntimeError(f"snapshot {name}: {snap['Status']}\n{self.server.tail()}")
        return timed(go)

    def pgbr_backup(self, kind):
        return timed(lambda: self.pgbackrest("backup", f"--type={kind}"))

    def repo_sizes(self):
        repo = os.path.join(self.data, "repo")
        log = du(os.path.join(repo, "log"))
        return {
            "strata_backup": du(repo) - log,
            "strata_log": log,
            "pgbr_backup": du(os.path.join(self.pgbr, "repo", "backup")),
            "pgbr_archive": du(os.path.join(self.pgbr, "repo", "archive")),
        }

    def full_and_incremental(self):
        r = self.results
        r["sizes_before"] = self.repo_sizes()
        # Full: Strata first, then pgBackRest.
        r["full_strata_s"] = self.strata_snapshot("full")
        r["full_pgbr_s"] = self.pgbr_backup("full")
        self.settle()
        r["sizes_full"] = self.repo_sizes()

        # About 1% of pgbench_accounts updated (tpcb-like: one account row per transaction).
        accounts = self.args.scale * 100000
        clients = 4
        per_client = max(1, accounts // 100 // clients)
        before = self.page_hashes()
        self.sql("TRUNCATE pgbench_history")
        t = time.monotonic()
        out = self.pgbench("-c", str(clients), "-j", "2", "-t", str(per_client), "-n")  # -n: history truncated
        r["churn_s"] = time.monotonic() - t
        r["churn_tps"] = next((ln for ln in out.splitlines() if ln.startswith("tps")), "")
        r["churn_txns"] = clients * per_client
        r["churn_rows"] = int(self.sql("SELECT count(DISTINCT aid) FROM pgbench_history"))
        r["accounts"] = accounts
        after = self.page_hashes()
        pages = changed = 0
        file_bytes = changed_file_bytes = 0
        for path, hs in after.items():
            old = before.get(path, [])
            pages += len(hs)
            diff = sum(1 for i, h in enumerate(hs) if i >= len(old) or old[i] != h)
            changed += diff
            file_bytes += len(hs) * 8192
            if diff or len(hs) != len(old):
                changed_file_bytes += len(hs) * 8192
        r["pages"], r["pages_changed"] = pages, changed
        r["file_bytes"], r["changed_file_bytes"] = file_bytes, changed_file_bytes
        self.settle()

        # Incremental: pgBackRest first, then Strata.
        r["incr_pgbr_s"] = self.pgbr_backup("incr")
        r["incr_strata_s"] = self.strata_snapshot("incr")
        self.settle()
        r["sizes_incr"] = self.repo_sizes()
        info = json.loads(self.pgbackrest("info", "--output=json").stdout)
        r["pgbr_info"] = [{"type": b["type"], "size": b["info"]["size"], "repo_size": b["info"]["repository"]["size"],
                           "delta": b["info"]["delta"]} for b in info[0]["backup"]]
        r["strata_snapshots"] = [(s["DBSnapshotIdentifier"], s.get("SnapshotType"), s.get("AllocatedStorage"))
                                 for s in self.client.describe_db_snapshots()["DBSnapshots"]]

    def strata_restore(self):
        """Seconds from the restore request until the restored server takes
        connections out of recovery (as pgBackRest's figure is measured);
        the time to `available`, which also waits for the new instance's
        first automated snapshot, is recorded beside it."""
        transitions = []
        accepting_at = {}

        def go():
            self.client.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="restored",
                                                             DBSnapshotIdentifier="incr")
            self.wait_instance("restored", transitions=transitions, accepting_at=accepting_at)
        wall = time.time()
        t_available = timed(go)
        t = accepting_at.get("s", t_available)
        self.results["restore_strata_available_s"] = t_available
        inst = self.describe("restored")
        port = inst["Endpoint"]["Port"]
        # Where the time went, from the restored server's log.
        log = open(os.path.join(self.data, "instances", inst["DbiResourceId"], "postgres.log")).read()
        stamps = {}
        for line in log.splitlines():
            for key, needle in (("start", "starting PostgreSQL"), ("ready", "ready to accept connections"),
                                ("redo_done", "redo done at")):
                if needle in line and key not in stamps:
                    stamps[key] = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").replace(
                        tzinfo=datetime.timezone.utc).timestamp()
        self.results["strata_restore_phases"] = {
            "statuses": transitions,  # seconds after the request, as polled
            "files_s": stamps.get("start", wall) - wall,
            "server_start_to_ready_s": stamps.get("ready", 0) - stamps.get("start", 0),
            "redo": [ln[24:].strip() for ln in log.splitlines() if "redo" in ln][:4],
        }
        p = run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", DB, "-Atqc",
                 "SELECT count(*) FROM pgbench_accounts"], env=self.pgenv())
        self.results["strata_restored_rows"] = int(p.stdout)
        self.client.delete_db_instance(DBInstanceIdentifier="restored", SkipFinalSnapshot=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                self.describe("restored")
            except self.client.exceptions.DBInstanceNotFoundFault:
                break
            time.sleep(0.2)
        return t

    def pgbr_restore(self):
        target = os.path.join(self.pgbr, "restored")
        sock = os.path.join(self.pgbr, "restored-run")
        os.makedirs(target, mode=0o700)
        os.makedirs(sock, mode=0o700)
        run(["chown", "postgres:postgres", target, sock])
        port = self.port + 1000
        self.restored_pgdata = target

        phases = {}

        def go():
            phases["pgbackrest_restore_s"] = timed(lambda: self.pgbackrest(
                "restore", f"--pg1-path={target}", "--type=immediate", "--target-action=promote"))
            run([f"{PG_BIN}/pg_ctl", "start", "-w", "-t", "1800", "-s", "-D", target, "-l",
                 os.path.join(self.pgbr, "restored.log"), "-o",
                 f"-c port={port} -c unix_socket_directories={sock} -c listen_addresses='' -c archive_mode=off"],
                as_postgres=True)
            while True:
                p = run([f"{PG_BIN}/psql", "-h", sock, "-p", str(port), "-U", USER, "-d", DB, "-Atqc",
                         "SELECT pg_is_in_recovery()"], check=False)
                if p.returncode == 0 and p.stdout.strip() == "f":
                    break
                time.sleep(POLL)
        t = timed(go)
        self.results["pgbr_restore_phases"] = phases
        p = run([f"{PG_BIN}/psql", "-h", sock, "-p", str(port), "-U", USER, "-d", DB, "-Atqc",
                 "SELECT count(*) FROM pgbench_accounts"])
        self.results["pgbr_restored_rows"] = int(p.stdout)
        self.results["pgbr_restored_bytes"] = du(target)
        self.stop_restored()
        return t

    def stop_restored(self):
        if self.restored_pgdata and os.path.exists(os.path.join(self.restored_pgdata, "postmaster.pid")):
            run([f"{PG_BIN}/pg_ctl", "stop", "-w", "-s", "-m", "fast", "-D", self.restored_pgdata],
                as_postgres=True, check=False)

    def restores(self):
        self.results["restore_strata_s"] = self.strata_restore()
        self.results["restore_pgbr_s"] = self.pgbr_restore()

    def wal_throughput(self, label, load):
        """Runs load(); then how long until each tool holds all the WAL it made."""
        self.settle()
        start_lsn = self.sql("SELECT pg_current_wal_lsn()")
        t0 = time.monotonic()
        load()
        t_end = time.time()
        load_s = time.monotonic() - t0
        end_seg = self.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        wal_bytes = int(self.sql(f"SELECT pg_current_wal_lsn() - '{start_lsn}'::pg_lsn"))
        mono_end = time.monotonic()
        self.sql("SELECT pg_switch_wal()")  # pgBackRest archives whole segments only
        done = {}

        def strata():
            self.wait_strata_until(t_end)
            done["strata"] = time.monotonic() - mono_end

        def pgbr():
            self.wait_archived(end_seg)
            done["pgbr"] = time.monotonic() - mono_end
        threads = [threading.Thread(target=strata), threading.Thread(target=pgbr)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.results[f"wal_{label}"] = {"load_s": load_s, "wal_bytes": wal_bytes, "lag_strata_s": done["strata"],
                                        "lag_pgbr_s": done["pgbr"]}

    def wal_drain(self):
        """Archiving capacity: WAL made while neither tool could take it (the
        archive_command fails; stratad is SIGSTOPped), then each drains the
        backlog alone, pgBackRest first."""
        self.settle()
        archive_command = self.sql("SHOW archive_command")
        rows = max(1, self.args.wal_mib) * 1048576 // 150
        self.sql("CREATE TABLE IF NOT EXISTS wal_load (id bigint, v text)")
        self.sql("ALTER SYSTEM SET archive_command = 'false'")
        self.sql("SELECT pg_reload_conf()")
        time.sleep(0.5)
        start_lsn = self.sql("SELECT pg_current_wal_lsn()")
        self.server.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            self.sql(f"INSERT INTO wal_load SELECT g, md5(g::text) || md5((g + 1)::text) "
                     f"FROM generate_series(1, {rows}) g")
            load_s = time.monotonic() - t0
            t_end = time.time()
            end_seg = self.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
            wal_bytes = int(self.sql(f"SELECT pg_current_wal_lsn() - '{start_lsn}'::pg_lsn"))
            self.sql("SELECT pg_switch_wal()")
            # pgBackRest alone.
            self.sql(f"ALTER SYSTEM SET archive_command = '{archive_command}'")
            t = time.monotonic()
            self.sql("SELECT pg_reload_conf()")
            self.wait_archived(end_seg)
            pgbr = time.monotonic() - t
        finally:
            self.server.proc.send_signal(signal.SIGCONT)
        # Strata alone.
        t = time.monotonic()
        self.wait_strata_until(t_end)
        strata = time.monotonic() - t
        hwm = next(ln for ln in open(f"/proc/{self.server.proc.pid}/status") if ln.startswith("VmHWM"))
        self.results["wal_drain"] = {"load_s": load_s, "wal_bytes": wal_bytes, "strata_s": strata, "pgbr_s": pgbr,
                                     "stratad_vmhwm": hwm.split(":")[1].strip()}

    def wal(self):
        sizes0 = self.repo_sizes()
        self.wal_throughput("pgbench", lambda: self.pgbench("-c", "4", "-j", "2", "-T", str(self.args.wal_seconds),
                                                            "-n"))
        self.wal_drain()
        sizes1 = self.repo_sizes()
        self.results["wal_log_added"] = sizes1["strata_log"] - sizes0["strata_log"]
        self.results["wal_archive_added"] = sizes1["pgbr_archive"] - sizes0["pgbr_archive"]

    def cleanup(self):
        try:
            self.stop_restored()
        finally:
            if self.server:
                self.server.stop()
            harness.stop_postgres_servers(self.tmp)
            if self.args.keep:
                print("kept", self.tmp)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


def report(b):
    r = b.results
    print(f"PostgreSQL {b.versions['postgres']}, {b.versions['pgbackrest']}, {os.cpu_count()} cores, "
          f"load average now {' '.join('%.2f' % x for x in os.getloadavg())} (at start {b.load_start})")
    print(f"pg_ctl restart -m fast (to enable archive_mode): {r['restart_s']:.1f} s")
    print(f"pgbench -i -s {b.args.scale}: {r['pgbench_init_s']:.1f} s; database {mib(r['db_bytes']):.0f} MiB, "
          f"pgdata without pg_wal {mib(r['pgdata_bytes']):.0f} MiB")
    print("pgBackRest settings: " + "; ".join(f"{k}={v}" for k, v in b.pgbr_conf["global"]
                                              if not k.endswith("-path")))

    def row(what, s, p, unit="s", fmt="%.2f"):
        print(f"{what:40s} {fmt % s:>10s} {fmt % p:>10s} {unit:4s} ratio {s / p:.2f}")
    print(f"{'':40s} {'Strata':>10s} {'pgBackRest':>10s}")
    row("full backup", r["full_strata_s"], r["full_pgbr_s"])
    print(f"churn: {r['churn_txns']} pgbench transactions in {r['churn_s']:.1f} s ({r['churn_tps']}); "
          f"{r['churn_rows']} accounts rows = {100 * r['churn_rows'] / r['accounts']:.2f}% of them; "
          f"{r['pages_changed']} of {r['pages']} 8 KiB pages under base/ = "
          f"{100 * r['pages_changed'] / r['pages']:.1f}%; files with a change "
          f"{100 * r['changed_file_bytes'] / r['file_bytes']:.1f}% of the bytes")
    row("incremental backup", r["incr_strata_s"], r["incr_pgbr_s"])
    s0, s1, s2 = r["sizes_before"], r["sizes_full"], r["sizes_incr"]
    row("repo, backups, after full (MiB)", mib(s1["strata_backup"]), mib(s1["pgbr_backup"]), "MiB", "%.1f")
    row("repo, backups, full + incr (MiB)", mib(s2["strata_backup"]), mib(s2["pgbr_backup"]), "MiB", "%.1f")
    row("  added by the incremental (MiB)", mib(s2["strata_backup"] - s1["strata_backup"]),
        mib(s2["pgbr_backup"] - s1["pgbr_backup"]), "MiB", "%.1f")
    print(f"  (Strata's repository held {mib(s0['strata_backup']):.1f} MiB before the full: the automated "
          f"snapshot taken when the instance was created, empty)")
    row("repo, WAL at that point (MiB)", mib(s2["strata_log"]), mib(s2["pgbr_archive"]), "MiB", "%.1f")
    print("pgbackrest info:", r["pgbr_info"])
    print("strata snapshots:", r["strata_snapshots"])
    row("restore to accepting + promoted", r["restore_strata_s"], r["restore_pgbr_s"])
    print(f"  Strata's instance was `available` after {r['restore_strata_available_s']:.2f} s "
          f"(its first automated snapshot taken)")
    print(f"  Strata: {r['strata_restore_phases']}; pgBackRest: {r['pgbr_restore_phases']}")
    print(f"  rows restored: Strata {r['strata_restored_rows']}, pgBackRest {r['pgbr_restored_rows']}")
    w = r["wal_pgbench"]
    print(f"WAL, pgbench flat out: {mib(w['wal_bytes']):.0f} MiB in {w['load_s']:.1f} s = "
          f"{mib(w['wal_bytes']) / w['load_s']:.1f} MiB/s generated, both tools taking it as it comes")
    row("  catch-up after the load ends", w["lag_strata_s"], w["lag_pgbr_s"])
    row("  WAL / (load + catch-up)", mib(w["wal_bytes"]) / (w["load_s"] + w["lag_strata_s"]),
        mib(w["wal_bytes"]) / (w["load_s"] + w["lag_pgbr_s"]), "MiB/s", "%.1f")
    w = r["wal_drain"]
    print(f"WAL backlog (bulk INSERT while neither archives): {mib(w['wal_bytes']):.0f} MiB, made in "
          f"{w['load_s']:.1f} s")
    row("  time to drain it, each alone", w["strata_s"], w["pgbr_s"])
    print(f"  stratad peak RSS (VmHWM) after the drain: {w['stratad_vmhwm']}")
    row("  drain throughput", mib(w["wal_bytes"]) / w["strata_s"], mib(w["wal_bytes"]) / w["pgbr_s"],
        "MiB/s", "%.1f")
    print(f"WAL stored by the two loads: Strata log {mib(r['wal_log_added']):.0f} MiB, "
          f"pgBackRest archive {mib(r['wal_archive_added']):.0f} MiB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stratad", default="build/bin/stratad")
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--wal-seconds", type=int, default=60)
    ap.add_argument("--wal-mib", type=int, default=1024, help="WAL backlog of the drain phase, about")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (processes are stopped)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (pgBackRest and the servers run as the OS user postgres)")
    if shutil.which("pgbackrest") is None:
        run(["apt-get", "install", "-y", "pgbackrest"], capture=False)
    b = Bench(args)
    b.load_start = " ".join("%.2f" % x for x in os.getloadavg())
    try:
        b.start()
        b.load()
        b.full_and_incremental()
        b.restores()
        b.wal()
        report(b)
    except Exception:
        if b.server:
            print(b.server.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
