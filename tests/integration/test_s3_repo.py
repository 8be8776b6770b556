"""The repository on a real S3 endpoint (Ceph RGW, started by scripts/test
with ../shared/tools/ceph-s3): snapshot, restore and point-in-time restore
through the aws CLI with stratad's repository in a bucket."""
import os
import sqlite3
import subprocess
import time
import unittest

from harness import STRATA, Stratad, StrataTestCase, wait_until

ENDPOINT = os.environ.get("S3_ENDPOINT")


class FaultyProxy:
    """Forwards to the S3 endpoint, but answers every 5th request with 503
    SlowDown, every 7th with 500, cuts every 11th GET mid-body (or drops the
    connection of a PUT without answering), and stalls every 13th for 3 s.

    A request (method, path and range) is faulted at most MAX_FAULTS_PER_REQUEST
    times, so the schedule tests that stratad retries, not how many retries a
    run of unlucky interleavings of its parallel requests happens to need."""

    MAX_FAULTS_PER_REQUEST = 2

    def __init__(self, upstream):
        import http.client
        import http.server
        import threading
        import urllib.parse
        target = urllib.parse.urlparse(upstream)
        proxy = self
        self.count = 0
        self.faults = 0
        self.faults_by_request = {}
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                key = (self.command, self.path, self.headers.get("Range"))
                with proxy.lock:
                    proxy.count += 1
                    n = proxy.count
                    if proxy.faults_by_request.get(key, 0) >= FaultyProxy.MAX_FAULTS_PER_REQUEST:
                        n = 1  # this request has had its share: let it through
                    elif n % 5 == 0 or n % 7 == 0 or n % 11 == 0 or n % 13 == 0:
                        proxy.faults_by_request[key] = proxy.faults_by_request.get(key, 0) + 1
                if n % 5 == 0 or n % 7 == 0:
                    with proxy.lock:
                        proxy.faults += 1
                    code, err = (503, "SlowDown") if n % 5 == 0 else (500, "InternalError")
                    msg = f"<Error><Code>{err}</Code><Message>injected</Message></Error>".encode()
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if n % 13 == 0:
                    with proxy.lock:
                        proxy.faults += 1
                    time.sleep(3)  # a stall: stratad must cut it and retry
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                resp = conn.getresponse()
                data = resp.read()
                if n % 11 == 0 and (self.command == "PUT" or (self.command == "GET" and len(data) > 100)):
                    with proxy.lock:
                        proxy.faults += 1
                    if self.command == "GET":
                        self.send_response(resp.status)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(k, v)
                if not resp.getheader("Content-Length") and self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _serve(self):
                try:
                    self._handle()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # stratad cut a stalled transfer: expected

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _serve

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def create_bucket(name):
    import boto3
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                      aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    try:
        s3.create_bucket(Bucket=name)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return s3


@unittest.skipUnless(ENDPOINT, "S3_ENDPOINT not set: no S3 endpoint to test against")
class S3Repository(StrataTestCase):
    def setUp(self):
        self.bucket = "strata-it"
        self.s3 = create_bucket(self.bucket)
        self.prefix = "run-%d" % int(time.time() * 1000)
        super().setUp()

    def start_server(self, data_dir):
        return Stratad(data_dir, ["--repo", f"s3://{self.bucket}/{self.prefix}", "--s3-endpoint", ENDPOINT,
                                  "--s3-path-style"]).start()

    def test_snapshot_restore_and_point_in_time_on_s3(self):
        # Replace the default server with one whose repository is in the bucket.
        self.server.stop()
        self.server = self.start_server(self.data_dir)
        self.create_instance("app")
        path = self.aws("rds", "describe-db-instances", "--db-instance-identifier",
                        "app")["DBInstances"][0]["Endpoint"]["Address"]
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            db.executemany("INSERT INTO t (v) VALUES (?)", [("row %d" % i,) for i in range(5000)])
        self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "app", "--db-snapshot-identifier", "s1")
        self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", "s1")
        keys = [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix).get("Contents", [])]
        self.assertTrue(any("/snapshots/" in k for k in keys), keys)
        self.assertTrue(any("/packs/" in k for k in keys), keys)
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO t (v) VALUES ('after')")
        committed = time.time()
        rds = self.client()
        wait_until(lambda: rds.describe_db_instances(DBInstanceIdentifier="app")["DBInstances"][0]
                   .get("LatestRestorableTime") and rds.describe_db_instances(DBInstanceIdentifier="app")
                   ["DBInstances"][0]["LatestRestorableTime"].timestamp() > committed, what="window")
        self.aws("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier", "copy",
                 "--db-snapshot-identifier", "s1")
        self.aws("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier", "app",
                 "--target-db-instance-identifier", "latest", "--use-latest-restorable-time")
        for name, rows in (("copy", 5000), ("latest", 5001)):
            wait_until(lambda: rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
                       ["DBInstanceStatus"] == "available", what=name)
            p = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["Endpoint"]["Address"]
            with sqlite3.connect(p) as db:
                self.assertEqual(db.execute("SELECT count(*) FROM t").fetchone()[0], rows)
                self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        # strata reads the bucket itself, with its own environment's S3 keys.
        env = dict(self.env, AWS_ACCESS_KEY_ID=os.environ["AWS_ACCESS_KEY_ID"],
                   AWS_SECRET_ACCESS_KEY=os.environ["AWS_SECRET_ACCESS_KEY"])
        p = subprocess.run([STRATA, "--data-dir", self.data_dir, "repo", "verify"], env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"full verify: \d+ snapshots, \d+ chunks re-hashed, 0 problems")

    def test_backups_and_restores_ride_out_s3_faults(self):
        proxy = FaultyProxy(ENDPOINT)
        self.addCleanup(proxy.close)
        self.server.stop()
        self.server = Stratad(self.data_dir, ["--repo", f"s3://{self.bucket}/{self.prefix}", "--s3-endpoint",
                                              proxy.url, "--s3-path-style", "--s3-stall-timeout", "1"]).start()
        self.create_instance("app", "--backup-retention-period", "0")
        path = self.aws("rds", "describe-db-instances", "--db-instance-identifier",
                        "app")["DBInstances"][0]["Endpoint"]["Address"]
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
            db.executemany("INSERT INTO t (v) VALUES (randomblob(3000))", [()] * 20000)
        self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "app", "--db-snapshot-identifier", "s1")
        self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", "s1")
        self.aws("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier", "copy",
                 "--db-snapshot-identifier", "s1")
        self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", "copy")
        copy = self.aws("rds", "describe-db-instances", "--db-instance-identifier",
                        "copy")["DBInstances"][0]["Endpoint"]["Address"]
        with sqlite3.connect(copy) as a, sqlite3.connect(path) as b:
            self.assertEqual(a.execute("SELECT count(*), sum(length(v)) FROM t").fetchone(),
                             b.execute("SELECT count(*), sum(length(v)) FROM t").fetchone())
        self.assertGreater(proxy.faults, 3, "the proxy must actually have injected faults")
        env = dict(self.env, AWS_ACCESS_KEY_ID=os.environ["AWS_ACCESS_KEY_ID"],
                   AWS_SECRET_ACCESS_KEY=os.environ["AWS_SECRET_ACCESS_KEY"])
        p = subprocess.run([STRATA, "--data-dir", self.data_dir, "repo", "verify"], env=env,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn(" 0 problems", p.stdout)

    def test_a_missing_bucket_is_a_clear_error_at_start(self):
        self.server.stop()
        bad = Stratad(self.data_dir, ["--repo", "s3://no-such-bucket-strata/x", "--s3-endpoint", ENDPOINT,
                                      "--s3-path-style"])
        with self.assertRaises(AssertionError) as ctx:
            bad.start()
        self.assertIn("does not exist", str(ctx.exception))
        self.server = self.start_server(self.data_dir)  # for cleanup


if __name__ == "__main__":
    unittest.main()
