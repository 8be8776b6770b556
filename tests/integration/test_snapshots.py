"""Manual DB snapshots and restores, end to end through the RDS API with the
real aws CLI and boto3, on real SQLite databases."""
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import unittest

from harness import ON_S3, Stratad, StrataTestCase, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def db_path(test, name):
    return test.aws("rds", "describe-db-instances", "--db-instance-identifier", name)["DBInstances"][0]["Endpoint"]["Address"]


def fill(path, rows, pad=200):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, pad TEXT)")
        db.executemany("INSERT INTO items (pad) VALUES (?)", [("x%d" % i * (pad // 4),) for i in range(rows)])


def check(path):
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT count(*), coalesce(max(id), 0) FROM items").fetchone()


class Snapshots(StrataTestCase):
    def test_the_runbook_as_written(self):
        self.create_instance("app")
        fill(db_path(self, "app"), 1000)
        self.aws("rds", "describe-db-instances")
        snap = self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "app",
                        "--db-snapshot-identifier", "app-snap-1")["DBSnapshot"]
        self.assertEqual(snap["Status"], "creating")
        self.assertEqual(snap["SnapshotType"], "manual")
        self.assertRegex(snap["DBSnapshotArn"], r"^arn:aws:rds:us-east-1:\d{12}:snapshot:app-snap-1$")
        self.assertEqual(self.aws("rds", "describe-db-snapshots", "--db-snapshot-identifier",
                                  "app-snap-1")["DBSnapshots"][0]["DBSnapshotIdentifier"], "app-snap-1")
        manual = self.aws("rds", "describe-db-snapshots", "--snapshot-type", "manual")["DBSnapshots"]
        self.assertEqual([s["DBSnapshotIdentifier"] for s in manual], ["app-snap-1"])
        self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", "app-snap-1")
        done = self.aws("rds", "describe-db-snapshots", "--db-snapshot-identifier", "app-snap-1")["DBSnapshots"][0]
        self.assertEqual((done["Status"], done["PercentProgress"]), ("available", 100))
        for field in ("SnapshotCreateTime", "OriginalSnapshotCreateTime", "DbiResourceId", "EngineVersion",
                      "AllocatedStorage", "InstanceCreateTime"):
            self.assertIn(field, done)
        self.assertEqual(done["Encrypted"], False)

        # The source keeps changing after the snapshot; the copy must not.
        fill(db_path(self, "app"), 10)
        restored = self.aws("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier", "app-copy",
                            "--db-snapshot-identifier", "app-snap-1")["DBInstance"]
        self.assertEqual(restored["DBInstanceStatus"], "creating")
        self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", "app-copy")
        copy_path = db_path(self, "app-copy")
        self.assertNotEqual(copy_path, db_path(self, "app"))
        self.assertEqual(check(copy_path), (1000, 1000))
        self.assertEqual(check(db_path(self, "app")), (1010, 1010), "the source is untouched")
        with sqlite3.connect(copy_path) as db:  # writable
            db.execute("INSERT INTO items (pad) VALUES ('new')")
        self.assertEqual(self.aws_error("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier",
                                        "app-copy", "--db-snapshot-identifier", "app-snap-1"),
                         "DBInstanceAlreadyExists")
        events = self.aws("rds", "describe-events", "--source-type", "db-snapshot")["Events"]
        self.assertIn("Manual snapshot created", [e["Message"] for e in events])

    def test_the_cron_backup_script_runs_unchanged(self):
        self.create_instance("app")
        script = os.path.join(self.tmp, "backup_script.sh")
        with open(script, "w") as f:
            f.write('#!/bin/bash\nDB_INSTANCE_NAME="app"\n'
                    'SNAPSHOT_NAME="app-snapshot-$(date +\'%Y-%m-%d-%H-%M-%S\')"\n'
                    'aws rds create-db-snapshot --db-instance-identifier $DB_INSTANCE_NAME '
                    '--db-snapshot-identifier $SNAPSHOT_NAME\n')
        os.chmod(script, 0o755)
        env = dict(self.env, AWS_ENDPOINT_URL=self.server.endpoint,
                   PATH=os.path.join(ROOT, "scripts") + ":" + os.environ["PATH"])
        p = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        snaps = self.aws("rds", "describe-db-snapshots", "--db-instance-identifier", "app",
                         "--snapshot-type", "manual")["DBSnapshots"]
        self.assertEqual(len(snaps), 1)
        self.assertRegex(snaps[0]["DBSnapshotIdentifier"], r"^app-snapshot-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d$")

    def test_errors(self):
        self.create_instance("app", "--copy-tags-to-snapshot", "--tags", "Key=team,Value=db")
        snap = ["rds", "create-db-snapshot", "--db-instance-identifier"]
        self.aws(*snap, "app", "--db-snapshot-identifier", "s1")
        self.assertEqual(self.aws_error(*snap, "app", "--db-snapshot-identifier", "s1"), "DBSnapshotAlreadyExists")
        self.assertEqual(self.aws_error(*snap, "nope", "--db-snapshot-identifier", "s2"), "DBInstanceNotFound")
        for bad in ["1snap", "a--b", "snap-", "x" * 256]:
            self.assertEqual(self.aws_error(*snap, "app", "--db-snapshot-identifier", bad), "InvalidParameterValue")
        self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", "s1")
        tags = self.aws("rds", "describe-db-snapshots", "--db-snapshot-identifier", "s1")["DBSnapshots"][0]["TagList"]
        self.assertEqual(tags, [{"Key": "team", "Value": "db"}], "CopyTagsToSnapshot")
        self.assertEqual(self.aws_error("rds", "describe-db-snapshots", "--db-snapshot-identifier", "nope"),
                         "DBSnapshotNotFound")
        self.assertEqual(self.aws("rds", "describe-db-snapshots", "--db-instance-identifier", "nope")["DBSnapshots"],
                         [])
        self.assertEqual(self.aws_error("rds", "delete-db-snapshot", "--db-snapshot-identifier", "nope"),
                         "DBSnapshotNotFound")
        self.assertEqual(self.aws_error("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier",
                                        "x", "--db-snapshot-identifier", "nope"), "DBSnapshotNotFound")
        self.assertEqual(self.aws_error("rds", "copy-db-snapshot", "--source-db-snapshot-identifier", "s1",
                                        "--target-db-snapshot-identifier", "s1"), "DBSnapshotAlreadyExists")
        self.assertEqual(self.aws_error("rds", "describe-db-snapshots", "--filters", "Name=bogus,Values=x"),
                         "InvalidParameterValue")

    def test_quota(self):
        self.server.stop()
        self.server.extra_args = ["--manual-snapshot-quota", "2"]
        self.server.start()
        self.create_instance("app")
        for i in range(2):
            self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "app", "--db-snapshot-identifier", f"q{i}")
            self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", f"q{i}")
        self.assertEqual(self.aws_error("rds", "create-db-snapshot", "--db-instance-identifier", "app",
                                        "--db-snapshot-identifier", "q3"), "SnapshotQuotaExceeded")
        self.aws("rds", "delete-db-snapshot", "--db-snapshot-identifier", "q0")
        self.aws("rds", "wait", "db-snapshot-deleted", "--db-snapshot-identifier", "q0")
        self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "app", "--db-snapshot-identifier", "q3")

    def repository_threads(self):
        """The snapshot and restore thread counts the running stratad's log says it chose."""
        with open(self.server.log_path, "rb") as f:
            lines = [json.loads(l) for l in f if b'"msg":"backup repository"' in l]
        self.assertTrue(lines, self.server.tail())
        return lines[-1]["snapshot_threads"], lines[-1]["restore_threads"]

    def test_the_chunks_zstd_level_size_and_threads_are_settings(self):
        self.server.stop()
        for flag, value, message in (("--repo-zstd-level", "20", "Value 20 not in range -7 to 19"),
                                     ("--repo-chunk-kib", "48", "48 not in \\{4,8,16,32,64,128,256,512,1024\\}"),
                                     ("--repo-threads", "-1", "Value -1 not in range 0 to 1024")):
            with self.assertRaisesRegex(AssertionError, f"{flag}: {message}"):
                Stratad(self.server.data_dir, [flag, value]).start()
        self.server.extra_args = ["--repo-zstd-level", "19", "--repo-chunk-kib", "64", "--repo-threads", "3"]
        self.server.start()
        self.assertEqual(self.repository_threads(), ("3", "6"))
        self.create_instance("app")
        fill(db_path(self, "app"), 2000)
        self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "app", "--db-snapshot-identifier", "big")
        self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", "big")
        # The defaults again: the next snapshot has other chunks, so it reads the file whole.
        self.server.stop()
        self.server.extra_args = ["--repo-zstd-level", "-7", "--repo-threads", "1", "--repo-memory-mib", "32"]
        self.server.start()
        self.assertEqual(self.repository_threads(), ("1", "1"), "32 MiB of working memory is one restore thread")
        fill(db_path(self, "app"), 10)
        self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "app", "--db-snapshot-identifier", "small")
        self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", "small")
        if not ON_S3:
            sizes = {}
            for name in os.listdir(os.path.join(self.server.data_dir, "repo", "snapshots")):
                with open(os.path.join(self.server.data_dir, "repo", "snapshots", name), "rb") as f:
                    head = f.read(4096)
                for size in (65536, 4096):
                    if b'"chunk_size":%d' % size in head:
                        sizes[name] = size
            self.assertEqual(sorted(sizes.values()), [4096, 65536, 65536],
                             "the instance's first automated snapshot and `big` in 64 KiB chunks, `small` in 4 KiB")
        for snap, rows in (("big", 2000), ("small", 2010)):
            self.aws("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier", f"from-{snap}",
                     "--db-snapshot-identifier", snap)
            self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", f"from-{snap}")
            self.assertEqual(check(db_path(self, f"from-{snap}")), (rows, rows))

    def test_copy_tags_delete_and_final_snapshot_with_boto3(self):
        rds = self.client()
        self.create_instance("app")
        fill(db_path(self, "app"), 300)
        rds.create_db_snapshot(DBInstanceIdentifier="app", DBSnapshotIdentifier="orig",
                               Tags=[{"Key": "a", "Value": "1"}])
        rds.get_waiter("db_snapshot_available").wait(DBSnapshotIdentifier="orig")
        arn = rds.describe_db_snapshots(DBSnapshotIdentifier="orig")["DBSnapshots"][0]["DBSnapshotArn"]
        rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "b", "Value": "2"}])
        copy = rds.copy_db_snapshot(SourceDBSnapshotIdentifier="orig", TargetDBSnapshotIdentifier="copy",
                                    CopyTags=True)["DBSnapshot"]
        self.assertEqual(sorted(t["Key"] for t in copy["TagList"]), ["a", "b"])
        self.assertEqual(copy["SnapshotType"], "manual")
        rds.get_waiter("db_snapshot_available").wait(DBSnapshotIdentifier="copy")
        original = rds.describe_db_snapshots(DBSnapshotIdentifier="orig")["DBSnapshots"][0]
        copied = rds.describe_db_snapshots(DBSnapshotIdentifier="copy")["DBSnapshots"][0]
        self.assertEqual(copied["OriginalSnapshotCreateTime"], original["OriginalSnapshotCreateTime"])
        rds.remove_tags_from_resource(ResourceName=arn, TagKeys=["a"])
        self.assertEqual(rds.list_tags_for_resource(ResourceName=arn)["TagList"], [{"Key": "b", "Value": "2"}])
        deleted = rds.delete_db_snapshot(DBSnapshotIdentifier="orig")["DBSnapshot"]
        self.assertEqual(deleted["Status"], "deleted")
        rds.get_waiter("db_snapshot_deleted").wait(DBSnapshotIdentifier="orig")
        with self.assertRaises(rds.exceptions.DBSnapshotNotFoundFault):
            rds.describe_db_snapshots(DBSnapshotIdentifier="orig")

        # A final snapshot outlives its instance and restores.
        rds.delete_db_instance(DBInstanceIdentifier="app", FinalDBSnapshotIdentifier="app-final")
        rds.get_waiter("db_instance_deleted").wait(DBInstanceIdentifier="app",
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        final = rds.describe_db_snapshots(DBSnapshotIdentifier="app-final")["DBSnapshots"][0]
        self.assertEqual(final["Status"], "available")
        rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="reborn", DBSnapshotIdentifier="app-final",
                                                 DBInstanceClass="db.t3.small", DeletionProtection=True,
                                                 Tags=[{"Key": "from", "Value": "final"}])
        rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier="reborn",
                                                     WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        inst = rds.describe_db_instances(DBInstanceIdentifier="reborn")["DBInstances"][0]
        self.assertEqual((inst["DBInstanceClass"], inst["DeletionProtection"]), ("db.t3.small", True))
        self.assertEqual(check(inst["Endpoint"]["Address"]), (300, 300))
        self.assertEqual(self.strata("repo", "verify").returncode, 0)
        stats = self.strata("repo", "stats").stdout
        self.assertRegex(stats, r"^\d+ snapshots \([\d.]+ MiB logical\) in \d+ packs: [\d.]+ MiB stored")
        self.assertIn("unique", stats)

    def test_consistent_under_a_running_writer(self):
        self.create_instance("busy")
        path = db_path(self, "busy")
        fill(path, 1)
        stop = threading.Event()
        errors = []

        def writer():
            try:
                with sqlite3.connect(path, isolation_level=None) as db:
                    db.execute("PRAGMA busy_timeout=10000")
                    i = 0
                    while not stop.is_set():
                        i += 1
                        db.execute("INSERT INTO items (pad) VALUES (?)", ("w" * 300,))
                        if i % 2000 == 0:
                            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as e:  # surfaced by the assertion below
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        try:
            rds = self.client()
            for i in range(4):
                wait_until(lambda: check(path)[0] > 200 * (i + 1), what="writer progress")
                rds.create_db_snapshot(DBInstanceIdentifier="busy", DBSnapshotIdentifier=f"live-{i}")
                rds.get_waiter("db_snapshot_available").wait(DBSnapshotIdentifier=f"live-{i}",
                                                             WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        for i in range(4):
            rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=f"r{i}", DBSnapshotIdentifier=f"live-{i}")
        for i in range(4):
            rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"r{i}",
                                                         WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            count, top = check(db_path(self, f"r{i}"))
            self.assertEqual(count, top, "a gap-free prefix of the writer's ids")
            self.assertGreater(count, 200)

    def test_a_snapshot_interrupted_by_kill_ends_failed_or_complete(self):
        self.create_instance("big")
        fill(db_path(self, "big"), 120000, pad=800)  # ~100 MB, so the snapshot takes a while
        self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "big", "--db-snapshot-identifier", "cut")
        self.server.stop(signal.SIGKILL)
        self.server.start()
        snap = self.aws("rds", "describe-db-snapshots", "--db-snapshot-identifier", "cut")["DBSnapshots"][0]
        self.assertIn(snap["Status"], ("failed", "available"))
        # Not left backing-up by the killed snapshot. It may be backing-up for
        # a while all the same when the restarted server takes an automated
        # snapshot (one is due at once if, say, the kill cut short the
        # instance's first): seen once on S3, not reproduced in four runs.
        wait_until(lambda: self.aws("rds", "describe-db-instances", "--db-instance-identifier", "big")
                   ["DBInstances"][0]["DBInstanceStatus"] == "available", timeout=120, what="the instance available")
        if snap["Status"] == "available":
            self.aws("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier", "cut-copy",
                     "--db-snapshot-identifier", "cut")
            self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", "cut-copy")
            self.assertEqual(check(db_path(self, "cut-copy"))[0], 120000)
        self.assertEqual(self.strata("repo", "verify").returncode, 0)
        # The instance can be snapshotted again.
        self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "big", "--db-snapshot-identifier", "again")
        self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", "again")


if __name__ == "__main__":
    unittest.main()
