"""The postgres engine end to end: real PostgreSQL 15 clusters from Debian's
packages, created, supervised, snapshotted and restored (also to a point in
time) through /usr/bin/aws and boto3, checked with psql, pgbench and
pg_amcheck."""
import datetime
import glob
import os
import random
import signal
import subprocess
import time
import unittest

from harness import StrataTestCase, wait_until

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1] if glob.glob("/usr/lib/postgresql/*/bin") else None
USER, PASSWORD, DB = "appuser", "s3cret-pass", "app"


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alive(pid):
    """Whether pid is a live process (a zombie nobody reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@unittest.skipIf(PG_BIN is None, "PostgreSQL server programs are not installed")
class PostgresTest(StrataTestCase):

    # --- helpers ---

    def create_pg(self, name, wait=True, **extra):
        rds = self.rds()
        out = rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                                     MasterUsername=USER, MasterUserPassword=PASSWORD, DBName=DB, **extra)
        if wait:
            self.wait_available(name)
        return out["DBInstance"]

    def port(self, name):
        return self.rds().describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["Endpoint"]["Port"]

    def psql(self, name, sql, password=PASSWORD, expect_ok=True, db=DB):
        env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
        p = subprocess.run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.port(name)), "-U", USER, "-d", db,
                            "-v", "ON_ERROR_STOP=1", "-Atqc", sql], env=env, capture_output=True, text=True,
                           timeout=120)
        if expect_ok and p.returncode != 0:
            self.fail(f"psql on {name} failed: {p.stderr}")
        return p.stdout.strip() if expect_ok else p

    def restorable(self, name):
        inst = self.rds().describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
        lrt = inst.get("LatestRestorableTime")
        return lrt.timestamp() if lrt else None

    def amcheck(self, name):
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        p = subprocess.run([f"{PG_BIN}/pg_amcheck", "-h", "127.0.0.1", "-p", str(self.port(name)), "-U", USER,
                            "--install-missing", "--heapallindexed", "-d", DB], env=env, capture_output=True,
                           text=True, timeout=300)
        self.assertEqual(p.returncode, 0, f"pg_amcheck found problems in {name}: {p.stdout}{p.stderr}")

    def postmaster_pid(self, name):
        inst = self.rds().describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
        path = os.path.join(self.data_dir, "instances", inst["DbiResourceId"], "pgdata", "postmaster.pid")
        with open(path) as f:
            return int(f.readline())

    # --- tests ---

    def test_instances_logins_data_api_and_supervision(self):
        out = self.aws("rds", "create-db-instance", "--db-instance-identifier", "pg", "--engine", "postgres",
                       "--db-instance-class", "db.t3.micro", "--master-username", USER,
                       "--master-user-password", PASSWORD, "--db-name", DB)["DBInstance"]
        self.assertEqual(out["DBInstanceStatus"], "creating")
        self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", "pg")
        inst = self.aws("rds", "describe-db-instances", "--db-instance-identifier", "pg")["DBInstances"][0]
        self.assertEqual(inst["Endpoint"]["Address"], "127.0.0.1")
        self.assertTrue(inst["EngineVersion"].startswith("15"), inst["EngineVersion"])
        self.assertNotIn("MasterUserPassword", inst)
        version = self.psql("pg", "SHOW server_version")
        self.assertTrue(inst["EngineVersion"].startswith(version.split()[0]), (inst["EngineVersion"], version))
        self.assertEqual(self.psql("pg", "SELECT current_user || '@' || current_database()"), f"{USER}@{DB}")
        self.assertEqual(self.psql("pg", "SHOW data_checksums"), "on")
        # stratad runs with malloc's huge-page tunable (common/allocator.h);
        # the servers it starts get the environment it was given.
        def environ(pid):
            with open(f"/proc/{pid}/environ", "rb") as f:
                return f.read().split(b"\0")
        tunables = [v for v in environ(self.server.proc.pid) if v.startswith(b"GLIBC_TUNABLES=")]
        self.assertTrue(tunables and b"glibc.malloc.hugetlb=1" in tunables[0], tunables)
        pg_env = environ(self.postmaster_pid("pg"))
        self.assertFalse([v for v in pg_env if v.startswith((b"GLIBC_TUNABLES=", b"STRATA_GLIBC"))], pg_env)
        bad = self.psql("pg", "SELECT 1", password="wrong-password", expect_ok=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("password authentication failed", bad.stderr)
        # The password is kept nowhere in plain text, nor logged.
        for root, _, files in os.walk(self.tmp):
            for f in files:
                path = os.path.join(root, f)
                if os.path.isfile(path) and os.path.getsize(path) < (64 << 20):
                    with open(path, "rb") as fh:
                        self.assertNotIn(PASSWORD.encode(), fh.read(), path)

        # RDS's validation.
        for user, password, why in [("postgres", PASSWORD, "reserved"), ("select", PASSWORD, "reserved"),
                                    ("okuser", "short", "too short")]:
            code = self.aws_error("rds", "create-db-instance", "--db-instance-identifier", "bad", "--engine",
                                  "postgres", "--db-instance-class", "db.t3.micro", "--master-username", user,
                                  "--master-user-password", password)
            self.assertEqual(code, "InvalidParameterValue", why)
        code = self.aws_error("rds", "create-db-instance", "--db-instance-identifier", "bad", "--engine", "postgres",
                              "--db-instance-class", "db.t3.micro", "--master-username", USER)
        self.assertEqual(code, "InvalidParameterValue")

        # The RDS Data API, typed as for PostgreSQL.
        self.psql("pg", "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(8,2), ok boolean, "
                        "raw bytea, score float8)")
        data = self.client("rds-data")
        arn = inst["DBInstanceArn"]
        secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app"
        tx = data.begin_transaction(resourceArn=arn, secretArn=secret, database=DB)["transactionId"]
        data.execute_statement(resourceArn=arn, secretArn=secret, database=DB, transactionId=tx,
                               sql="INSERT INTO items VALUES (:id, :name, 9.50, :ok, :raw, :score)",
                               parameters=[{"name": "id", "value": {"longValue": 1}},
                                           {"name": "name", "value": {"stringValue": "it's"}},
                                           {"name": "ok", "value": {"booleanValue": True}},
                                           {"name": "raw", "value": {"blobValue": b"\x00\x01\xff"}},
                                           {"name": "score", "value": {"doubleValue": 2.5}}])
        data.commit_transaction(resourceArn=arn, secretArn=secret, transactionId=tx)
        res = data.execute_statement(resourceArn=arn, secretArn=secret, database=DB,
                                     sql="SELECT id, name, price, ok, raw, score, NULL::text AS nothing FROM items "
                                         "WHERE id = :id AND name::text = :name",
                                     parameters=[{"name": "id", "value": {"longValue": 1}},
                                                 {"name": "name", "value": {"stringValue": "it's"}}],
                                     includeResultMetadata=True)
        self.assertEqual(res["records"], [[{"longValue": 1}, {"stringValue": "it's"}, {"stringValue": "9.50"},
                                           {"booleanValue": True}, {"blobValue": b"\x00\x01\xff"},
                                           {"doubleValue": 2.5}, {"isNull": True}]])
        self.assertEqual([c["typeName"] for c in res["columnMetadata"]],
                         ["int4", "text", "numeric", "bool", "bytea", "float8", "text"])
        upd = data.execute_statement(resourceArn=arn, secretArn=secret, database=DB, sql="UPDATE items SET ok = false")
        self.assertEqual(upd["numberOfRecordsUpdated"], 1)
        with self.assertRaises(data.exceptions.BadRequestException):
            data.execute_statement(resourceArn=arn, secretArn=secret, database=DB, sql="SELECT * FROM missing")

        # A server killed with SIGKILL is restarted, and says so in events.
        os.kill(self.postmaster_pid("pg"), signal.SIGKILL)
        wait_until(lambda: any("restarted" in e["Message"] for e in self.rds().describe_events(
            SourceType="db-instance", SourceIdentifier="pg")["Events"]), timeout=30, what="the restart event")
        wait_until(lambda: self.psql("pg", "SELECT count(*) FROM items", expect_ok=False).stdout.strip() == "1",
                   timeout=60, what="the restarted server")

        # ModifyDBInstance changes the master password at once.
        self.aws("rds", "modify-db-instance", "--db-instance-identifier", "pg", "--master-user-password",
                 "another-pass-2", "--apply-immediately")
        self.assertEqual(self.psql("pg", "SELECT 1", password="another-pass-2"), "1")
        self.assertNotEqual(self.psql("pg", "SELECT 1", expect_ok=False).returncode, 0, "the old password still works")
        self.assertEqual(self.aws_error("rds", "modify-db-instance", "--db-instance-identifier", "pg",
                                        "--master-user-password", "short"), "InvalidParameterValue")
        # A request refused for another of its parameters changes no password either.
        self.assertEqual(self.aws_error("rds", "modify-db-instance", "--db-instance-identifier", "pg",
                                        "--master-user-password", "refused-pass-3", "--db-instance-class", "m5",
                                        "--apply-immediately"), "InvalidParameterValue")
        self.assertEqual(self.psql("pg", "SELECT 1", password="another-pass-2"), "1")
        self.assertNotEqual(self.psql("pg", "SELECT 1", password="refused-pass-3", expect_ok=False).returncode, 0,
                            "a refused modification changed the password")
        self.aws("rds", "modify-db-instance", "--db-instance-identifier", "pg", "--master-user-password", PASSWORD,
                 "--apply-immediately")

        # RebootDBInstance restarts the server.
        before = self.postmaster_pid("pg")
        out = self.aws("rds", "reboot-db-instance", "--db-instance-identifier", "pg")["DBInstance"]
        self.assertEqual(out["DBInstanceStatus"], "rebooting")
        self.wait_available("pg")
        self.assertNotEqual(self.postmaster_pid("pg"), before)
        self.assertEqual(self.psql("pg", "SELECT count(*) FROM items"), "1")
        self.assertEqual(self.aws_error("rds", "reboot-db-instance", "--db-instance-identifier", "pg",
                                        "--force-failover"), "InvalidParameterCombination")
        self.assertEqual(self.aws_error("rds", "reboot-db-instance", "--db-instance-identifier", "nope"),
                         "DBInstanceNotFound")

        # Servers stop with stratad and start again with it.
        pid = self.postmaster_pid("pg")
        self.restart()
        self.assertFalse(alive(pid), "the server outlived stratad's shutdown")
        self.assertEqual(self.psql("pg", "SELECT name FROM items"), "it's")

        # Deleting removes the cluster.
        data_path = os.path.join(self.data_dir, "instances", inst["DbiResourceId"])
        self.aws("rds", "delete-db-instance", "--db-instance-identifier", "pg", "--skip-final-snapshot")
        wait_until(lambda: not os.path.exists(data_path), timeout=60, what="the cluster removed")

    def test_snapshot_during_pgbench_restores_consistent(self):
        self.create_pg("bench")
        # The first automated backup (backing-up) runs first, as on RDS.
        wait_until(lambda: self.restorable("bench"), timeout=120, what="the first automated backup")
        self.wait_available("bench")
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        target = ["-h", "127.0.0.1", "-p", str(self.port("bench")), "-U", USER, DB]
        subprocess.run([f"{PG_BIN}/pgbench", "-i", "-s", "3", "-q", *target], env=env, check=True,
                       capture_output=True, timeout=300)
        load = subprocess.Popen([f"{PG_BIN}/pgbench", "-T", "8", "-c", "2", "-n", *target], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # The snapshot starts once the load is committing.
            wait_until(lambda: int(self.psql("bench", "SELECT count(*) FROM pgbench_history")) > 100, timeout=30,
                       what="pgbench committing")
            self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "bench",
                     "--db-snapshot-identifier", "under-load")
            self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", "under-load")
        finally:
            load.wait(timeout=60)
        snap = self.aws("rds", "describe-db-snapshots", "--db-snapshot-identifier", "under-load")["DBSnapshots"][0]
        self.assertEqual(snap["Engine"], "postgres")
        self.assertEqual(snap["Status"], "available")
        self.aws("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier", "bench-copy",
                 "--db-snapshot-identifier", "under-load")
        self.wait_available("bench-copy")
        self.assertNotEqual(self.port("bench-copy"), self.port("bench"))
        sums = self.psql("bench-copy", "SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                                       "(SELECT sum(bbalance) FROM pgbench_branches), "
                                       "(SELECT sum(tbalance) FROM pgbench_tellers), "
                                       "(SELECT coalesce(sum(delta), 0) FROM pgbench_history), "
                                       "(SELECT count(*) FROM pgbench_history)")
        parts = sums.split("|")
        self.assertEqual(len(set(parts[:4])), 1, f"pgbench balances disagree: {sums}")
        self.assertGreater(int(parts[4]), 0, "the snapshot holds none of the load")
        self.amcheck("bench-copy")
        # The copy is its own writable cluster; the source is untouched.
        self.psql("bench-copy", "CREATE TABLE only_in_copy(x int)")
        self.assertEqual(self.psql("bench", "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_copy'"), "0")

        # A final snapshot outlives its instance and restores.
        self.aws("rds", "delete-db-instance", "--db-instance-identifier", "bench-copy",
                 "--final-db-snapshot-identifier", "copy-final")
        self.aws("rds", "wait", "db-instance-deleted", "--db-instance-identifier", "bench-copy")
        self.aws("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier", "from-final",
                 "--db-snapshot-identifier", "copy-final")
        self.wait_available("from-final")
        self.assertEqual(self.psql("from-final", "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_copy'"),
                         "1")

    def test_point_in_time_restores_are_exact(self):
        self.create_pg("src")
        rds = self.rds()
        wait_until(lambda: self.restorable("src"), timeout=60, what="a restorable time")
        self.psql("src", "CREATE TABLE w (id int PRIMARY KEY); "
                         "CREATE PROCEDURE write(a int, b int) LANGUAGE plpgsql AS $$ BEGIN "
                         "FOR i IN a..b LOOP INSERT INTO w VALUES (i); COMMIT; PERFORM pg_sleep(0.002); END LOOP; "
                         "END $$")
        self.psql("src", "CALL write(1, 1500)")
        # The server dies mid-stream: Strata restarts it and the log goes on
        # without a hole.
        os.kill(self.postmaster_pid("src"), signal.SIGKILL)
        wait_until(lambda: self.psql("src", "SELECT 1", expect_ok=False).stdout.strip() == "1", timeout=60,
                   what="the restarted server")
        # About 20 MiB of WAL in commits a quarter of a second apart, so
        # shipped as small segments (one per flush), enough of them to be
        # merged: the restores below replay merged segments.
        self.psql("src", "CREATE TABLE filler (g int, pad text); "
                         "CREATE PROCEDURE fill() LANGUAGE plpgsql AS $$ BEGIN FOR i IN 1..20 LOOP "
                         "INSERT INTO filler SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 3000) g; "
                         "COMMIT; PERFORM pg_sleep(0.25); END LOOP; END $$")
        self.psql("src", "CALL fill()")
        self.psql("src", "CALL write(1501, 3000)")
        rid = rds.describe_db_instances(DBInstanceIdentifier="src")["DBInstances"][0]["DbiResourceId"]

        def merged():
            with open(self.server.log_path, "rb") as f:
                return any(b"change-log segments merged" in line and rid.encode() in line for line in f)
        wait_until(merged, timeout=60, what="merged change-log segments")
        rows = self.psql("src", "SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM w ORDER BY id")
        commits = [(int(i), float(t)) for i, t in (line.split("|") for line in rows.splitlines())]
        self.assertEqual(len(commits), 3000)
        end = commits[-1][1]
        wait_until(lambda: (self.restorable("src") or 0) >= end, timeout=30, what="the window past the load")
        backups = rds.describe_db_instance_automated_backups(DBInstanceIdentifier="src")
        self.assertEqual(backups["DBInstanceAutomatedBackups"][0]["Status"], "active")
        gaps = [e for e in rds.describe_events(SourceType="db-instance", SourceIdentifier="src",
                                               Duration=60)["Events"] if "not possible" in e["Message"]]
        self.assertEqual(gaps, [], "the server's restart opened a gap in the change log")

        # Ten random times, each between two commits (and never on one).
        random.seed(1)
        times = []
        while len(times) < 10:
            k = random.randrange(1, len(commits))
            lo, hi = commits[k - 1][1], commits[k][1]
            if hi - lo > 0.002:
                times.append((lo + (hi - lo) / 2, k))
        for n, (t, expected) in enumerate(times):
            self.aws("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier", "src",
                     "--target-db-instance-identifier", f"at{n}", "--restore-time", iso(t))
        for n, (t, expected) in enumerate(times):
            self.wait_available(f"at{n}", timeout=300)
            got = self.psql(f"at{n}", "SELECT count(*), coalesce(max(id), 0) FROM w")
            self.assertEqual(got, f"{expected}|{expected}", f"restore to {iso(t)}")
            if n < 2:
                self.amcheck(f"at{n}")
            self.aws("rds", "delete-db-instance", "--db-instance-identifier", f"at{n}", "--skip-final-snapshot")

        # The latest restorable time, and the errors.
        self.aws("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier", "src",
                 "--target-db-instance-identifier", "latest", "--use-latest-restorable-time")
        self.wait_available("latest", timeout=300)
        self.assertEqual(self.psql("latest", "SELECT count(*) FROM w"), "3000")
        code = self.aws_error("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier", "src",
                              "--target-db-instance-identifier", "x", "--restore-time", "2020-01-01T00:00:00Z")
        self.assertEqual(code, "InvalidRestoreFault")
        code = self.aws_error("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier", "src",
                              "--target-db-instance-identifier", "x", "--restore-time", iso(end),
                              "--use-latest-restorable-time")
        self.assertEqual(code, "InvalidParameterCombination")


    def test_copies_retained_backups_and_retention_zero(self):
        self.create_pg("keep")
        rds = self.rds()
        wait_until(lambda: self.restorable("keep"), timeout=60, what="a restorable time")
        self.wait_available("keep")
        self.psql("keep", "CREATE TABLE k (id int); INSERT INTO k SELECT generate_series(1, 100)")
        rds.create_db_snapshot(DBInstanceIdentifier="keep", DBSnapshotIdentifier="k1")
        wait_until(lambda: rds.describe_db_snapshots(DBSnapshotIdentifier="k1")["DBSnapshots"][0]["Status"]
                   == "available", timeout=120, what="k1 available")
        # A copy shares the data and restores like the original.
        self.aws("rds", "copy-db-snapshot", "--source-db-snapshot-identifier", "k1",
                 "--target-db-snapshot-identifier", "k1-copy")
        self.aws("rds", "delete-db-snapshot", "--db-snapshot-identifier", "k1")
        self.aws("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier", "from-copy",
                 "--db-snapshot-identifier", "k1-copy")
        self.wait_available("from-copy")
        self.assertEqual(self.psql("from-copy", "SELECT count(*) FROM k"), "100")
        # The automated snapshot can be copied, not deleted.
        auto = rds.describe_db_snapshots(DBInstanceIdentifier="keep", SnapshotType="automated")["DBSnapshots"]
        self.assertTrue(auto)
        self.assertEqual(self.aws_error("rds", "delete-db-snapshot", "--db-snapshot-identifier",
                                        auto[0]["DBSnapshotIdentifier"]), "InvalidDBSnapshotState")

        # Deleted with its automated backups retained: still restorable to a point in time.
        self.psql("keep", "INSERT INTO k SELECT generate_series(101, 150)")
        committed = float(self.psql("keep", "SELECT extract(epoch FROM clock_timestamp())"))
        wait_until(lambda: (self.restorable("keep") or 0) > committed, timeout=30, what="window past the insert")
        self.aws("rds", "delete-db-instance", "--db-instance-identifier", "keep", "--skip-final-snapshot",
                 "--no-delete-automated-backups")
        wait_until(lambda: not any(i["DBInstanceIdentifier"] == "keep"
                                   for i in rds.describe_db_instances()["DBInstances"]), timeout=60,
                   what="keep deleted")
        retained = self.aws("rds", "describe-db-instance-automated-backups", "--db-instance-identifier",
                            "keep")["DBInstanceAutomatedBackups"][0]
        self.assertEqual(retained["Status"], "retained")
        self.assertEqual(retained["Engine"], "postgres")
        rds.restore_db_instance_to_point_in_time(
            SourceDBInstanceAutomatedBackupsArn=retained["DBInstanceAutomatedBackupsArn"],
            TargetDBInstanceIdentifier="from-retained", UseLatestRestorableTime=True)
        self.wait_available("from-retained", timeout=300)
        self.assertEqual(self.psql("from-retained", "SELECT count(*) FROM k"), "150")
        self.aws("rds", "delete-db-instance-automated-backup", "--dbi-resource-id", retained["DbiResourceId"])

        # Retention 0 deletes the automated backups and lets go of the WAL slot.
        wait_until(lambda: self.restorable("from-retained"), timeout=60, what="the restored instance's backups")
        self.assertEqual(self.psql("from-retained", "SELECT slot_name FROM pg_replication_slots"), "strata_capture")
        rds.modify_db_instance(DBInstanceIdentifier="from-retained", BackupRetentionPeriod=0, ApplyImmediately=True)
        wait_until(lambda: self.psql("from-retained", "SELECT count(*) FROM pg_replication_slots") == "0",
                   timeout=30, what="the capture slot dropped")
        with self.assertRaises(rds.exceptions.DBInstanceAutomatedBackupNotFoundFault):
            rds.describe_db_instance_automated_backups(DBInstanceIdentifier="from-retained")


if __name__ == "__main__":
    unittest.main()
