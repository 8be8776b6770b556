"""A full disk (issue 20 item 14): stratad on a small loop-mounted ext4 with
1 KiB blocks, filled to the last block.

Deletes must work through the API, stratad must restart, work a caller asks
for must be refused with a clear 4xx rather than filling the disk, and
automatic work must pause (and say so in DescribeEvents) until space
returns. Needs root (mount -o loop); skips with the reason otherwise.
"""
import errno
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import botocore.exceptions

from harness import STRATAD, Stratad, StrataTestCase, stop_postgres_servers, wait_until

MIB = 1 << 20
FS_MIB = 96
RESERVE_MIB = 8
LOW_WATER_MIB = 24


def fill(path):
    """Writes `path` until the file system has not one block left; returns its size."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        return 0  # not even room for the file's name: full already
    written = 0
    try:
        for chunk in (MIB, 64 << 10, 4 << 10, 1 << 10, 1):
            data = b"\xa5" * chunk
            while True:
                try:
                    written += os.write(fd, data)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        try:
            os.fsync(fd)
        except OSError:
            pass
    finally:
        os.close(fd)
    return written


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class FullDiskTest(StrataTestCase):
    # Tests of what happens with no reserve to give back.
    WITHOUT_RESERVE = {"test_a_database_opened_with_kilobytes_free_is_an_error_not_a_sigbus",
                       "test_starts_on_a_disk_full_to_the_last_block_with_no_reserve"}

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a loop file system (CI runs as root)")
        for tool in ("mkfs.ext4", "mount", "umount", "truncate"):
            if not shutil.which(tool):
                self.skipTest(f"{tool} is not installed (e2fsprogs, mount)")
        self.tmp = tempfile.mkdtemp(prefix="strata-it-disk-")
        if os.environ.get("STRATA_KEEP_TMP"):
            self.addCleanup(print, "kept", self.tmp)
        else:
            self.addCleanup(shutil.rmtree, self.tmp, True)
        self.image = os.path.join(self.tmp, "disk.img")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        subprocess.run(["truncate", "-s", f"{FS_MIB}M", self.image], check=True)
        # 1 KiB blocks (where SQLite's -shm mapping used to SIGBUS) and no
        # blocks reserved for root, so that full means full for stratad too.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "1024", "-m", "0", self.image], check=True)
        mounted = subprocess.run(["mount", "-o", "loop", self.image, self.mnt], capture_output=True, text=True)
        if mounted.returncode != 0:
            self.skipTest(f"cannot mount a loop file system: {mounted.stderr.strip()}")
        self.addCleanup(self._unmount)
        self.data_dir = os.path.join(self.mnt, "data")
        self.fillers = []
        reserve_mib = 0 if self._testMethodName in self.WITHOUT_RESERVE else RESERVE_MIB
        self.server = Stratad(self.data_dir, ["--disk-reserve-mib", str(reserve_mib),
                                              "--disk-low-water-mib", str(LOW_WATER_MIB)])
        self.server.log_path = os.path.join(self.tmp, "stratad.log")  # not on the full disk
        self.addCleanup(self._stop)
        self.server.start()

    def _stop(self):
        self.server.stop()
        stop_postgres_servers(self.mnt)

    def _unmount(self):
        if subprocess.run(["umount", self.mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)

    def fill_disk(self):
        path = os.path.join(self.mnt, f"filler{len(self.fillers)}")
        self.fillers.append(path)
        # ext4 reserves worst-case metadata for delayed allocation and gives
        # back what it did not need once the file is synced, and stratad may
        # free a temporary file meanwhile: fill again until it stays full.
        deadline = time.monotonic() + 30
        while True:
            fill(path)
            if free_bytes(self.mnt) < 64 << 10 or time.monotonic() > deadline:
                break
        self.assertLess(free_bytes(self.mnt), 64 << 10)

    def events(self, rds, name):
        return [e["Message"] for e in rds.describe_events(SourceType="db-instance", SourceIdentifier=name,
                                                          Duration=60)["Events"]]

    def wait_snapshot(self, rds, name):
        wait_until(lambda: rds.describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"][0]["Status"]
                   == "available", what=f"{name} available")

    def assert_never(self, predicate, seconds, what):
        """Fails if predicate() turns true within `seconds` (a bound on how long to look)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.assertFalse(predicate(), what)
            time.sleep(0.1)

    def error(self, call, **kwargs):
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            call(**kwargs)
        return cm.exception.response

    def test_deletes_restart_refusals_and_pause_on_a_full_disk(self):
        rds = self.client()
        reserve = os.path.join(self.data_dir, ".reserve")
        self.assertEqual(os.path.getsize(reserve), RESERVE_MIB * MIB, "the reserve is made at start")

        self.create_instance("full1")
        self.aws("rds", "create-db-instance", "--db-instance-identifier", "later", "--db-instance-class",
                 "db.t3.micro", "--engine", "sqlite", "--backup-retention-period", "0")
        self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", "later")
        rds.create_db_snapshot(DBInstanceIdentifier="full1", DBSnapshotIdentifier="snap1")
        self.wait_snapshot(rds, "snap1")

        self.fill_disk()
        # Automatic work pauses, and says so per instance, in RDS's "low storage" category.
        wait_until(lambda: any("Automated backups paused" in m for m in self.events(rds, "full1")),
                   what="the pause event")
        low = rds.describe_events(SourceType="db-instance", SourceIdentifier="full1", Duration=60,
                                  EventCategories=["low storage"])["Events"]
        self.assertTrue(low, "the pause event is in the low storage category")

        # Work a caller asks for is refused with a 4xx that says why, and
        # leaves no half-written snapshot behind.
        resp = self.error(rds.create_db_snapshot, DBInstanceIdentifier="full1", DBSnapshotIdentifier="snap-low")
        self.assertEqual(resp["Error"]["Code"], "SnapshotQuotaExceeded")
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertIn("No space left on device", resp["Error"]["Message"])
        ids = [s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots()["DBSnapshots"]]
        self.assertNotIn("snap-low", ids)
        resp = self.error(rds.restore_db_instance_from_db_snapshot, DBInstanceIdentifier="restored",
                          DBSnapshotIdentifier="snap1")
        self.assertEqual(resp["Error"]["Code"], "StorageQuotaExceeded")
        self.assertIn("No space left on device", resp["Error"]["Message"])
        self.assertEqual(self.aws_error("rds", "create-db-snapshot", "--db-instance-identifier", "full1",
                                        "--db-snapshot-identifier", "snap-low2"), "SnapshotQuotaExceeded")

        # Whatever the reserve gave back is taken too: the disk is full to the last block.
        self.fill_disk()
        rds.delete_db_snapshot(DBSnapshotIdentifier="snap1")
        ids = [s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots()["DBSnapshots"]]
        self.assertNotIn("snap1", ids)

        # A restart on the full disk: no exit 1, no SIGBUS.
        self.assertEqual(self.server.stop(), 0, self.server.tail())
        self.fill_disk()
        self.server.start()
        self.assertIsNone(self.server.proc.poll(), self.server.tail())
        rds = self.client()
        # Turned on while the disk is low: capture starts, its first
        # automated snapshot (due at once) waits.
        rds.modify_db_instance(DBInstanceIdentifier="later", BackupRetentionPeriod=1, ApplyImmediately=True)
        wait_until(lambda: rds.describe_db_instance_automated_backups(DBInstanceIdentifier="later")
                   ["DBInstanceAutomatedBackups"], what="later's capture")
        self.assert_never(lambda: rds.describe_db_snapshots(DBInstanceIdentifier="later", SnapshotType="automated")
                          ["DBSnapshots"], seconds=3, what="an automated snapshot while the disk is low")

        self.aws("rds", "delete-db-instance", "--db-instance-identifier", "full1", "--skip-final-snapshot")

        def gone():
            try:
                rds.describe_db_instances(DBInstanceIdentifier="full1")
                return False
            except rds.exceptions.DBInstanceNotFoundFault:
                return True
        wait_until(gone, timeout=60, what="full1 deleted")
        self.assertIsNone(self.server.proc.poll(), self.server.tail())

        # Space back: the work resumes, said so, and the reserve is whole again.
        for path in self.fillers:
            os.unlink(path)
        wait_until(lambda: any("Automated backups resumed" in m for m in self.events(rds, "later")),
                   what="the resume event")
        wait_until(lambda: any(s["Status"] == "available" for s in rds.describe_db_snapshots(
            DBInstanceIdentifier="later", SnapshotType="automated")["DBSnapshots"]),
            timeout=60, what="later's automated snapshot after the pause")
        wait_until(lambda: os.path.exists(reserve) and os.path.getsize(reserve) == RESERVE_MIB * MIB,
                   what="the reserve made whole")
        rds.create_db_snapshot(DBInstanceIdentifier="later", DBSnapshotIdentifier="snap-after")
        self.wait_snapshot(rds, "snap-after")
        with open(self.server.log_path, errors="replace") as f:
            self.assertNotRegex(f.read(), r": Success\b", "no error says 'Success'")

    def test_a_database_opened_with_kilobytes_free_is_an_error_not_a_sigbus(self):
        # SQLite extends a -shm file one byte per 4 KiB page; on 1 KiB blocks
        # that leaves holes, and with a few KiB free the first store into the
        # mapping was a SIGBUS that killed stratad. An instance without
        # backups has no connection open between Data API calls, so each
        # call makes its -shm file anew.
        rds, data = self.client(), self.client("rds-data")
        arn = self.aws("rds", "create-db-instance", "--db-instance-identifier", "plain", "--db-instance-class",
                       "db.t3.micro", "--engine", "sqlite", "--backup-retention-period", "0")["DBInstance"]["DBInstanceArn"]
        self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", "plain")
        data.execute_statement(resourceArn=arn, secretArn=arn, sql="CREATE TABLE t (x INTEGER)")
        data.execute_statement(resourceArn=arn, secretArn=arn, sql="INSERT INTO t VALUES (1)")
        self.fill_disk()
        wait_until(lambda: "automatic work paused" in open(self.server.log_path, errors="replace").read(),
                   what="the pause")
        # A few KiB back: enough for SQLite's one-byte writes, not for the
        # blocks its mapping and the commit then need.
        for kib in (12, 16, 20, 24, 28, 32):
            self.fill_disk()
            with open(self.fillers[0], "r+b") as f:
                f.truncate(os.path.getsize(self.fillers[0]) - kib * 1024)
                os.fsync(f.fileno())
            try:
                data.execute_statement(resourceArn=arn, secretArn=arn, sql="INSERT INTO t VALUES (2)")
            except botocore.exceptions.ClientError:
                pass  # an error answer is fine: the disk is full
            except botocore.exceptions.EndpointConnectionError:
                pass  # the assertion below says why
            code = self.server.proc.poll()
            self.assertIsNone(code, f"stratad died (exit {code}; -7 is SIGBUS) with {kib} KiB free")
        rds.describe_db_instances(DBInstanceIdentifier="plain")

    def test_starts_on_a_disk_full_to_the_last_block_with_no_reserve(self):
        # No reserve to give back: the start must write nothing it need not
        # (the repository location, instance states that did not change).
        self.create_instance("kept")
        self.assertEqual(self.server.stop(), 0, self.server.tail())
        self.fill_disk()
        # The endpoint file cannot be written either: the port is chosen here.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        log = open(self.server.log_path, "ab")
        proc = subprocess.Popen([STRATAD, "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{port}",
                                 "--disk-reserve-mib", "0", "--disk-low-water-mib", str(LOW_WATER_MIB)],
                                stdout=log, stderr=log)
        self.server.proc, self.server.log, self.server.endpoint = proc, log, url

        def healthy():
            code = proc.poll()
            if code is not None:
                raise AssertionError(f"stratad exited with {code} (-7 is SIGBUS):\n{self.server.tail()}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(healthy, what="stratad /health on the full disk")
        rds = self.client()
        self.assertEqual(rds.describe_db_instances(DBInstanceIdentifier="kept")["DBInstances"][0]["DBInstanceStatus"],
                         "available")
        resp = self.error(rds.create_db_snapshot, DBInstanceIdentifier="kept", DBSnapshotIdentifier="no-room")
        self.assertEqual(resp["Error"]["Code"], "SnapshotQuotaExceeded")
        self.assertIsNone(proc.poll(), self.server.tail())


if __name__ == "__main__":
    unittest.main()
