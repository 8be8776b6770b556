"""Integration-test harness: a real stratad on a free loopback port with a temp
data dir, driven by the real clients (Debian's /usr/bin/aws v2 and boto3).

Every process a test starts is stopped in tearDown; nothing is left behind.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

import boto3
import botocore.config

STRATAD = os.environ.get("STRATAD", "build/bin/stratad")
STRATA = os.environ.get("STRATA", "build/bin/strata")
ON_S3 = os.environ.get("STRATA_TEST_REPO") == "s3" and bool(os.environ.get("S3_ENDPOINT"))
S3_TEST_BUCKET = "strata-it"
AWS = "/usr/bin/aws"


def wait_until(predicate, timeout=20.0, what="condition"):
    """Polls predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def proc_status_kib(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class Stratad:
    """One stratad process over one data dir; restartable over the same dir."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        if ON_S3 and "--repo" not in self.extra_args:
            # The whole suite again with the repository in a bucket of the
            # test S3 endpoint, one prefix per server.
            prefix = os.path.basename(os.path.dirname(os.path.abspath(data_dir)))
            self.extra_args += ["--repo", f"s3://{S3_TEST_BUCKET}/{prefix}", "--s3-endpoint",
                                os.environ["S3_ENDPOINT"], "--s3-path-style"]
        self.proc = None
        self.endpoint = None
        self.log_path = os.path.join(os.path.dirname(data_dir), "stratad.log")

    def start(self):
        endpoint_file = os.path.join(self.data_dir, "endpoint")
        if os.path.exists(endpoint_file):
            os.unlink(endpoint_file)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [STRATAD, "--data-dir", self.data_dir, "--listen", "127.0.0.1:0", *self.extra_args],
            stdout=self.log, stderr=self.log)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"stratad exited with {self.proc.returncode}:\n{self.tail()}")
            if not os.path.exists(endpoint_file):
                return None
            with open(endpoint_file) as f:
                url = f.read().strip()
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    return url if r.status == 200 else None
            except OSError:
                return None

        self.endpoint = wait_until(ready, what="stratad /health")
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def stop_postgres_servers(root):
    """Stops any PostgreSQL server left under root (after a SIGKILLed stratad)."""
    for dirpath, dirnames, filenames in os.walk(root):
        if "postmaster.pid" in filenames:
            try:
                pid = int(open(os.path.join(dirpath, "postmaster.pid")).readline())
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    os.kill(pid, 0)
                    time.sleep(0.05)
            except (OSError, ValueError):
                pass
        dirnames[:] = [d for d in dirnames if d not in ("base", "pg_wal", "global", "repo")]


def remove_instance_os_users(root):
    """Removes the OS users stratad (as root) made for the PostgreSQL
    instances under root, which a test left without deleting them."""
    if os.geteuid() != 0:
        return
    import pwd
    for instance in glob.glob(os.path.join(root, "*", "instances", "*")):
        try:
            name = pwd.getpwuid(os.stat(instance).st_uid).pw_name
        except (OSError, KeyError):
            continue
        if name.startswith("strata-pg-"):
            subprocess.run(["userdel", "--force", name], capture_output=True)


class StrataTestCase(unittest.TestCase):
    """Starts stratad for each test; offers aws(), boto3 clients and strata()."""

    STRATAD_ARGS = ()  # extra stratad arguments of every test in the class

    @classmethod
    def setUpClass(cls):
        if os.environ.get("STRATA_TEST_REPO") == "s3":
            if not os.environ.get("S3_ENDPOINT"):
                raise unittest.SkipTest("STRATA_TEST_REPO=s3 but S3_ENDPOINT is not set")
            import boto3
            s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")
            try:
                s3.create_bucket(Bucket=S3_TEST_BUCKET)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="strata-it-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.server = Stratad(self.data_dir, self.STRATAD_ARGS).start()
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        self.server.stop()
        stop_postgres_servers(self.tmp)
        remove_instance_os_users(self.tmp)
        if os.environ.get("STRATA_KEEP_TMP"):
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def restart(self, sig=signal.SIGTERM):
        self.server.stop(sig)
        self.server.start()

    @property
    def env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") and not k.startswith("STRATA_")}
        env.update({
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.data_dir, "credentials"),
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_PAGER": "",
            "AWS_MAX_ATTEMPTS": "1",
            "STRATA_DATA_DIR": self.data_dir,
        })
        return env

    def aws(self, *args, expect_rc=0):
        """Runs the real aws CLI; returns parsed JSON output (or None)."""
        p = subprocess.run([AWS, "--endpoint-url", self.server.endpoint, "--output", "json", *args],
                           env=self.env, capture_output=True, text=True, timeout=120)
        if expect_rc is not None and p.returncode != expect_rc:
            self.fail(f"aws {' '.join(args)} exited {p.returncode}, wanted {expect_rc}\n"
                      f"stdout: {p.stdout}\nstderr: {p.stderr}\nserver:\n{self.server.tail()}")
        self.last_stderr = p.stderr
        return json.loads(p.stdout) if p.stdout.strip() else None

    def aws_error(self, *args):
        """Runs an aws command that must fail; returns its error code."""
        p = subprocess.run([AWS, "--endpoint-url", self.server.endpoint, "--output", "json", *args],
                           env=self.env, capture_output=True, text=True, timeout=120)
        self.assertNotEqual(p.returncode, 0, f"aws {' '.join(args)} succeeded: {p.stdout}")
        self.assertIn("An error occurred (", p.stderr, p.stderr)
        return p.stderr.split("An error occurred (", 1)[1].split(")", 1)[0]

    def client(self, service="rds"):
        session = boto3.session.Session(
            aws_access_key_id=self.credentials()[0], aws_secret_access_key=self.credentials()[1],
            region_name="us-east-1")
        return session.client(service, endpoint_url=self.server.endpoint,
                              config=botocore.config.Config(retries={"max_attempts": 1}))

    def rds(self):
        """One boto3 RDS client per server start (a restart moves the endpoint)."""
        if getattr(self, "_rds_for", None) != self.server.endpoint:
            self._rds, self._rds_for = self.client(), self.server.endpoint
        return self._rds

    def credentials(self):
        text = open(os.path.join(self.data_dir, "credentials")).read()
        kv = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)
        return kv["aws_access_key_id"], kv["aws_secret_access_key"]

    def strata(self, *args, stdin=None, expect_rc=0):
        env = self.env
        if ON_S3 and args[:1] == ("repo",):
            # `strata repo` reads the bucket itself, with its own S3 keys.
            env = dict(env, AWS_ACCESS_KEY_ID=os.environ["AWS_ACCESS_KEY_ID"],
                       AWS_SECRET_ACCESS_KEY=os.environ["AWS_SECRET_ACCESS_KEY"])
        p = subprocess.run([STRATA, "--data-dir", self.data_dir, *args], env=env,
                           input=stdin, capture_output=True, text=True, timeout=120)
        if expect_rc is not None and p.returncode != expect_rc:
            self.fail(f"strata {' '.join(args)} exited {p.returncode}, wanted {expect_rc}\n"
                      f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def create_instance(self, name, *extra):
        out = self.aws("rds", "create-db-instance", "--db-instance-identifier", name,
                       "--db-instance-class", "db.t3.micro", "--engine", "sqlite", *extra)
        self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", name)
        self.wait_first_backup(name)
        return out["DBInstance"]

    def wait_available(self, *names, timeout=180):
        """Polls until every named instance is available; fails at once on `failed`."""
        rds = self.client()

        def ready():
            for name in names:
                status = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["DBInstanceStatus"]
                if status == "failed":
                    raise AssertionError(f"{name} failed:\n{self.server.tail()}")
                if status != "available":
                    return False
            return True
        wait_until(ready, timeout=timeout, what=f"{names} available")

    def wait_first_backup(self, name, timeout=120):
        """With backups on, a new instance turns `available`, then `backing-up`
        for its first automated snapshot: the waiter may have caught it in
        between. Waits until that snapshot is taken and it is `available`."""
        rds = self.client()

        def settled():
            inst = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
            if inst["DBInstanceStatus"] != "available":
                return False
            if inst.get("BackupRetentionPeriod", 0) == 0:
                return True
            snaps = rds.describe_db_snapshots(DBInstanceIdentifier=name, SnapshotType="automated")["DBSnapshots"]
            return any(s["Status"] == "available" for s in snaps)
        wait_until(settled, timeout=timeout, what=f"{name}'s first automated snapshot")
