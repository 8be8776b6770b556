"""Automated backups and point-in-time restore, end to end with the real aws
CLI and boto3 on real SQLite: exactness under writers that use the file
directly and the Data API, external checkpoints, SIGKILL, and the errors."""
import datetime
import os
import random
import signal
import sqlite3
import threading
import time
import unittest

from harness import StrataTestCase, wait_until

# How long after a direct writer's commit returns Strata may stamp it: the
# capture wakes on inotify, so this is scheduling latency, not a poll interval.
# Restore times are chosen outside [commit start, commit end + this].
OBSERVE_SLACK = 0.05


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ts(value):
    """A timestamp from boto3 (datetime) or the CLI's JSON (ISO string)."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


class Writers:
    """A direct file writer and a Data API writer committing ids, each with
    the interval in which its commit happened."""

    def __init__(self, test, name, path):
        self.test, self.path, self.stop = test, path, threading.Event()
        self.commits = []  # (start, end, id, slack)
        self.lock = threading.Lock()
        self.arn = test.aws("rds", "describe-db-instances", "--db-instance-identifier",
                            name)["DBInstances"][0]["DBInstanceArn"]
        self.errors = []

    def file_writer(self):
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
            ckpt = sqlite3.connect(self.path, isolation_level=None, timeout=0.01)
            n = 0
            while not self.stop.is_set():
                n += 1
                start = time.time()
                db.execute("INSERT INTO ids (id, src) VALUES (?, 'file')", (n,))
                end = time.time()
                with self.lock:
                    self.commits.append((start, end, n, OBSERVE_SLACK))
                if n % 10 == 0:
                    # The application's own checkpoints must not cost a commit.
                    ckpt.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                time.sleep(random.uniform(0.06, 0.12))  # pacing, so gaps exist
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)

    def api_writer(self):
        try:
            data = self.test.client("rds-data")
            n = 1_000_000
            while not self.stop.is_set():
                n += 1
                start = time.time()
                data.execute_statement(resourceArn=self.arn, secretArn="arn:aws:secretsmanager:x",
                                       sql="INSERT INTO ids (id, src) VALUES (:id, 'api')",
                                       parameters=[{"name": "id", "value": {"longValue": n}}])
                end = time.time()
                with self.lock:
                    self.commits.append((start, end, n, 0.0))
                time.sleep(random.uniform(0.04, 0.1))
        except Exception as e:  # noqa: BLE001
            self.errors.append(e)

    def run(self, seconds):
        threads = [threading.Thread(target=self.file_writer), threading.Thread(target=self.api_writer)]
        for t in threads:
            t.start()
        time.sleep(seconds)  # the load runs this long; nothing waits on it
        self.stop.set()
        for t in threads:
            t.join()
        self.test.assertEqual(self.errors, [])

    def free_times(self, lo, hi, count):
        """Times in [lo, hi] that fall in no commit's uncertainty interval."""
        busy = sorted((s, e + slack) for s, e, _, slack in self.commits)
        out, tries = [], 0
        while len(out) < count and tries < 100000:
            tries += 1
            t = random.uniform(lo, hi)
            if all(not (s - 0.001 <= t <= e) for s, e in busy):
                out.append(t)
        return sorted(out)

    def expected_at(self, t):
        return {i for s, e, i, _ in self.commits if e <= t}


def db_path(test, name):
    return test.aws("rds", "describe-db-instances", "--db-instance-identifier",
                    name)["DBInstances"][0]["Endpoint"]["Address"]


def restorable(rds, name):
    inst = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
    return ts(inst["LatestRestorableTime"]) if "LatestRestorableTime" in inst else None


def wait_available(rds, names, timeout=120):
    def ready():
        statuses = {i["DBInstanceIdentifier"]: i["DBInstanceStatus"] for i in rds.describe_db_instances()["DBInstances"]}
        failed = [n for n in names if statuses.get(n) == "failed"]
        if failed:
            raise AssertionError(f"restores failed: {failed}")
        return all(statuses.get(n) == "available" for n in names)
    wait_until(ready, timeout=timeout, what="restored instances available")


def ids_in(path):
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {r[0] for r in db.execute("SELECT id FROM ids")}


class PointInTime(StrataTestCase):
    def start_app(self, name="app"):
        self.create_instance(name)
        path = db_path(self, name)
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE ids (id INTEGER PRIMARY KEY, src TEXT)")
        rds = self.client()
        wait_until(lambda: restorable(rds, name) is not None, timeout=30, what="a restorable time")
        return rds, path

    def restore_and_check(self, rds, writers, times, source="app", prefix="at"):
        names = []
        for k, t in enumerate(times):
            name = f"{prefix}-{k}"
            rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier=source,
                                                     TargetDBInstanceIdentifier=name,
                                                     RestoreTime=datetime.datetime.fromtimestamp(t, datetime.timezone.utc))
            names.append(name)
        wait_available(rds, names)
        for name, t in zip(names, times):
            got, want = ids_in(db_path(self, name)), writers.expected_at(t)
            self.assertEqual(got, want, f"restore to {iso(t)}: missing {sorted(want - got)[:5]}, "
                                        f"extra {sorted(got - want)[:5]}")

    def test_restores_hold_exactly_the_commits_up_to_the_restore_time(self):
        rds, path = self.start_app()
        writers = Writers(self, "app", path)
        begin = time.time()
        writers.run(8)
        end = time.time()
        wait_until(lambda: restorable(rds, "app") >= end, timeout=10, what="the window to reach the end of the load")
        lag = time.time() - restorable(rds, "app")
        self.assertLess(lag, 2.0, "LatestRestorableTime trails the present by about a second")
        window = rds.describe_db_instance_automated_backups(DBInstanceIdentifier="app")["DBInstanceAutomatedBackups"][0]
        self.assertEqual(window["Status"], "active")
        self.assertLessEqual(ts(window["RestoreWindow"]["EarliestTime"]), begin)
        self.assertGreater(len(writers.commits), 100)
        times = writers.free_times(begin, end, 20)
        self.assertEqual(len(times), 20)
        self.restore_and_check(rds, writers, times)

    def test_the_runbook_and_latest_restorable_time(self):
        rds, path = self.start_app()
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO ids VALUES (1, 'file')")
        committed = time.time()
        wait_until(lambda: restorable(rds, "app") > committed + OBSERVE_SLACK, timeout=10, what="window past the commit")
        at = iso(committed + OBSERVE_SLACK)
        out = self.aws("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier", "app",
                       "--target-db-instance-identifier", "app-pitr", "--restore-time", at)["DBInstance"]
        self.assertEqual(out["DBInstanceStatus"], "creating")
        self.aws("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier", "app",
                 "--target-db-instance-identifier", "app-latest", "--use-latest-restorable-time")
        wait_available(rds, ["app-pitr", "app-latest"])
        self.assertEqual(ids_in(db_path(self, "app-pitr")), {1})
        self.assertEqual(ids_in(db_path(self, "app-latest")), {1})
        events = self.aws("rds", "describe-events", "--source-type", "db-instance",
                          "--source-identifier", "app-pitr")["Events"]
        self.assertTrue(any("point in time" in e["Message"] for e in events), events)

    def test_errors(self):
        rds, _ = self.start_app()
        now = iso(time.time())
        self.assertEqual(self.aws_error("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier",
                                        "app", "--target-db-instance-identifier", "x", "--restore-time", now,
                                        "--use-latest-restorable-time"), "InvalidParameterCombination")
        self.assertEqual(self.aws_error("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier",
                                        "app", "--target-db-instance-identifier", "x", "--restore-time",
                                        "2020-01-01T00:00:00Z"), "InvalidRestoreFault")
        self.assertEqual(self.aws_error("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier",
                                        "nope", "--target-db-instance-identifier", "x",
                                        "--use-latest-restorable-time"), "DBInstanceNotFound")
        self.assertEqual(self.aws_error("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier",
                                        "app", "--target-db-instance-identifier", "app",
                                        "--use-latest-restorable-time"), "DBInstanceAlreadyExists")
        self.create_instance("nobackups", "--backup-retention-period", "0")
        with self.assertRaises(rds.exceptions.ClientError) as ctx:
            rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="nobackups",
                                                     TargetDBInstanceIdentifier="x", UseLatestRestorableTime=True)
        self.assertEqual(ctx.exception.response["Error"]["Code"], "PointInTimeRestoreNotEnabled")
        self.assertNotIn("LatestRestorableTime",
                         rds.describe_db_instances(DBInstanceIdentifier="nobackups")["DBInstances"][0])
        # Automated snapshots: listed, not deletable, copyable to a manual one.
        auto = rds.describe_db_snapshots(DBInstanceIdentifier="app", SnapshotType="automated")["DBSnapshots"]
        self.assertTrue(auto and auto[0]["DBSnapshotIdentifier"].startswith("rds:app-"), auto)
        wait_until(lambda: rds.describe_db_snapshots(DBSnapshotIdentifier=auto[0]["DBSnapshotIdentifier"])
                   ["DBSnapshots"][0]["Status"] == "available", what="the automated snapshot")
        self.assertEqual(self.aws_error("rds", "delete-db-snapshot", "--db-snapshot-identifier",
                                        auto[0]["DBSnapshotIdentifier"]), "InvalidDBSnapshotState")
        rds.copy_db_snapshot(SourceDBSnapshotIdentifier=auto[0]["DBSnapshotIdentifier"],
                             TargetDBSnapshotIdentifier="kept-copy")
        self.assertEqual(rds.describe_db_snapshots(DBSnapshotIdentifier="kept-copy")["DBSnapshots"][0]["SnapshotType"],
                         "manual")
        self.assertEqual(self.aws_error("rds", "describe-db-instance-automated-backups", "--db-instance-identifier",
                                        "nope"), "DBInstanceAutomatedBackupNotFound")
        ab = rds.describe_db_instance_automated_backups(DBInstanceIdentifier="app")["DBInstanceAutomatedBackups"][0]
        self.assertEqual(ab["Status"], "active")
        self.assertRegex(ab["DBInstanceAutomatedBackupsArn"], r"^arn:aws:rds:us-east-1:\d{12}:auto-backup:ab-[a-z0-9]{26}$")
        by_status = self.aws("rds", "describe-db-instance-automated-backups", "--filters",
                             "Name=status,Values=retained")["DBInstanceAutomatedBackups"]
        self.assertEqual(by_status, [])
        by_arn = rds.describe_db_instance_automated_backups(
            DBInstanceAutomatedBackupsArn=ab["DBInstanceAutomatedBackupsArn"])["DBInstanceAutomatedBackups"]
        self.assertEqual([b["DbiResourceId"] for b in by_arn], [ab["DbiResourceId"]])
        self.assertEqual(self.aws_error("rds", "describe-db-instance-automated-backups", "--filters",
                                        "Name=nonsense,Values=x"), "InvalidParameterValue")
        self.assertEqual(self.aws_error("rds", "delete-db-instance-automated-backup", "--dbi-resource-id",
                                        ab["DbiResourceId"]), "InvalidDBInstanceAutomatedBackupState")

    def test_retained_backups_of_a_deleted_instance(self):
        rds, path = self.start_app()
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO ids VALUES (7, 'file')")
        committed = time.time()
        wait_until(lambda: restorable(rds, "app") > committed, what="window past the commit")
        ab = rds.describe_db_instance_automated_backups(DBInstanceIdentifier="app")["DBInstanceAutomatedBackups"][0]
        rds.delete_db_instance(DBInstanceIdentifier="app", SkipFinalSnapshot=True, DeleteAutomatedBackups=False)
        wait_until(lambda: not any(i["DBInstanceIdentifier"] == "app"
                                   for i in rds.describe_db_instances()["DBInstances"]), what="app deleted")
        kept = rds.describe_db_instance_automated_backups(DbiResourceId=ab["DbiResourceId"])["DBInstanceAutomatedBackups"]
        self.assertEqual(kept[0]["Status"], "retained")
        self.aws("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-automated-backups-arn",
                 ab["DBInstanceAutomatedBackupsArn"], "--target-db-instance-identifier", "revived",
                 "--use-latest-restorable-time")
        wait_available(rds, ["revived"])
        self.assertEqual(ids_in(db_path(self, "revived")), {7})
        rds.delete_db_instance_automated_backup(DbiResourceId=ab["DbiResourceId"])
        self.assertEqual(self.aws_error("rds", "describe-db-instance-automated-backups", "--dbi-resource-id",
                                        ab["DbiResourceId"]), "DBInstanceAutomatedBackupNotFound")

    def test_retention_zero_deletes_the_automated_backups(self):
        rds, _ = self.start_app()
        rds.modify_db_instance(DBInstanceIdentifier="app", BackupRetentionPeriod=0, ApplyImmediately=True)
        self.assertEqual(rds.describe_db_snapshots(DBInstanceIdentifier="app", SnapshotType="automated")["DBSnapshots"], [])
        self.assertEqual(rds.describe_db_instance_automated_backups()["DBInstanceAutomatedBackups"], [])
        self.assertNotIn("LatestRestorableTime", rds.describe_db_instances(DBInstanceIdentifier="app")["DBInstances"][0])

    def test_sigkill_while_capturing_leaves_no_unreported_hole(self):
        rds, path = self.start_app()
        writers = Writers(self, "app", path)
        begin = time.time()
        t = threading.Thread(target=writers.file_writer)
        t.start()
        time.sleep(2)  # load runs before the kill
        self.server.stop(signal.SIGKILL)
        killed = time.time()
        time.sleep(0.5)  # the writer keeps committing while stratad is down
        self.server.start()
        time.sleep(2)
        writers.stop.set()
        t.join()
        end = time.time()
        self.assertEqual(writers.errors, [])
        rds = self.client()  # the restarted stratad listens on a new port
        wait_until(lambda: (restorable(rds, "app") or 0) >= end, timeout=20, what="window after restart")
        ab = rds.describe_db_instance_automated_backups(DBInstanceIdentifier="app")["DBInstanceAutomatedBackups"][0]
        self.assertLessEqual(ts(ab["RestoreWindow"]["EarliestTime"]), begin)
        # Times while stratad was down are refused, and say why; times around it are exact.
        down = killed + 0.2
        code = self.aws_error("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier", "app",
                              "--target-db-instance-identifier", "x", "--restore-time", iso(down))
        self.assertEqual(code, "InvalidRestoreFault")
        events = rds.describe_events(SourceType="db-instance", SourceIdentifier="app")["Events"]
        self.assertTrue(any("not possible between" in e["Message"] for e in events), events)
        times = writers.free_times(begin, killed - 1.0, 3) + writers.free_times(killed + 3.0, end, 3)
        self.restore_and_check(rds, writers, times, prefix="k")


if __name__ == "__main__":
    unittest.main()
