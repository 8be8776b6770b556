"""Security and resilience of the RDS Data API (issue 20, items 3, 6, 7, 9, 11, 13):
SQL stays inside the instance's own database, a statement never commits and
then answers a retryable error, out-of-range values are refused, every
statement has a deadline and a bounded result, and an open transaction does
not stall the other writers. Driven by boto3's rds-data client."""
import glob
import json
import os
import sqlite3
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials

from harness import StrataTestCase, Stratad, wait_until

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:any"
STATEMENT_TIMEOUT_SECONDS = 1.5
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1] if glob.glob("/usr/lib/postgresql/*/bin") else None


def rss_peak_kib(pid):
    """The process's peak resident set size (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def start_with_short_deadline(test):
    """StrataTestCase.setUp, with a short statement deadline so runaway tests end quickly."""
    test.tmp = tempfile.mkdtemp(prefix="strata-it-")
    test.data_dir = os.path.join(test.tmp, "data")
    test.server = Stratad(test.data_dir, ["--data-api-statement-timeout", str(STATEMENT_TIMEOUT_SECONDS)]).start()
    test.addCleanup(test._cleanup)


class DataApiSecurity(StrataTestCase):
    def setUp(self):
        start_with_short_deadline(self)
        # Without automated backups: nothing here depends on them, and the first one takes a while.
        self.arn = self.create_instance("app", "--backup-retention-period", "0")["DBInstanceArn"]
        self.path = self.client().describe_db_instances(DBInstanceIdentifier="app")["DBInstances"][0]["Endpoint"]["Address"]
        self.data = self.client("rds-data")
        self.run_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")

    def run_sql(self, sql, **kw):
        return self.data.execute_statement(resourceArn=self.arn, secretArn=SECRET, sql=sql, **kw)

    def assert_bad_request(self, sql, message_part=None, **kw):
        with self.assertRaises(self.data.exceptions.BadRequestException) as e:
            self.run_sql(sql, **kw)
        if message_part:
            self.assertIn(message_part, str(e.exception))
        return e.exception

    def count(self, table="t"):
        with sqlite3.connect(self.path) as db:
            return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def signed_post(self, path, body):
        """A signed rds-data request with a body boto3 would not send; returns (status, headers, body)."""
        key, secret = self.credentials()
        req = botocore.awsrequest.AWSRequest(method="POST", url=self.server.endpoint + path, data=body,
                                             headers={"Content-Type": "application/json"})
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(key, secret), "rds-data", "us-east-1").add_auth(req)
        raw = urllib.request.Request(req.url, data=body.encode(), headers=dict(req.headers.items()), method="POST")
        try:
            with urllib.request.urlopen(raw, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    # --- item 3: the instance's own database only ---

    def test_vacuum_into_a_path_outside_is_refused(self):
        outside = os.path.join(self.tmp, "escaped.db")
        self.assert_bad_request(f"VACUUM INTO '{outside}'", "not allowed")
        self.assertFalse(os.path.exists(outside))
        self.run_sql("VACUUM")  # plain VACUUM stays allowed

    def test_attach_of_the_catalog_or_another_instance_is_refused(self):
        other = self.create_instance("other", "--backup-retention-period", "0")
        other_path = other["Endpoint"]["Address"] if "Endpoint" in other else \
            self.client().describe_db_instances(DBInstanceIdentifier="other")["DBInstances"][0]["Endpoint"]["Address"]
        catalog = os.path.join(self.data_dir, "catalog.db")
        before = open(catalog, "rb").read()
        for target in (catalog, other_path, os.path.join(self.tmp, "new.db")):
            self.assert_bad_request(f"ATTACH '{target}' AS x", "not allowed")
            self.assert_bad_request(f"ATTACH '{target}' AS x; CREATE TABLE x.pwned (a)", "not allowed")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "new.db")))
        with sqlite3.connect(other_path) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM sqlite_master WHERE name='pwned'").fetchone()[0], 0)
        self.assertEqual(before, open(catalog, "rb").read())

    def test_engine_level_pragmas_are_refused(self):
        for sql in ("PRAGMA journal_mode=DELETE", "PRAGMA main.journal_mode=DELETE", "PRAGMA synchronous=OFF",
                    "PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA writable_schema=ON", "PRAGMA locking_mode=EXCLUSIVE",
                    "PRAGMA mmap_size=1000000", "SELECT * FROM pragma_journal_mode"):
            self.assert_bad_request(sql, "not allowed")
        with sqlite3.connect(self.path) as db:
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        # Harmless read-only pragmas still answer.
        out = self.run_sql("PRAGMA table_info(t)")
        self.assertEqual([r[1]["stringValue"] for r in out["records"]], ["id", "v"])
        self.run_sql("PRAGMA index_list(t)")
        self.run_sql("PRAGMA foreign_keys")
        self.run_sql("SELECT name FROM pragma_table_info('t')")

    def test_fts3_tokenizer_and_load_extension_are_refused(self):
        self.assert_bad_request("SELECT fts3_tokenizer('simple')", "not allowed")
        self.assert_bad_request("SELECT hex(fts3_tokenizer('simple'))", "not allowed")
        self.assert_bad_request("SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')", "not allowed")

    def test_ordinary_sql_still_runs(self):
        self.run_sql("CREATE INDEX t_v ON t (v)")
        self.run_sql("CREATE VIEW tv AS SELECT v FROM t")
        self.run_sql("CREATE TRIGGER tt AFTER INSERT ON t BEGIN SELECT 1; END")
        self.run_sql("ALTER TABLE t ADD COLUMN w")
        self.run_sql("INSERT INTO t (v) VALUES (1); UPDATE t SET w = 2; DELETE FROM t WHERE v = 3")
        self.run_sql("CREATE TEMP TABLE scratch (a); INSERT INTO scratch VALUES (1); SELECT * FROM scratch")
        self.assertEqual(self.run_sql("SELECT count(*) FROM tv")["records"], [[{"longValue": 1}]])
        self.run_sql("DROP VIEW tv; DROP INDEX t_v; DROP TRIGGER tt")

    # --- item 6: never commit and then answer a retryable error ---

    def test_invalid_utf8_text_is_answered_once_with_default_retries(self):
        key, secret = self.credentials()
        # boto3's defaults: a 500 would be retried, inserting the row again.
        retrying = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                         region_name="us-east-1").client("rds-data", endpoint_url=self.server.endpoint)
        for fmt in ("JSON", "NONE"):
            out = retrying.execute_statement(
                resourceArn=self.arn, secretArn=SECRET, formatRecordsAs=fmt,
                sql=f"INSERT INTO t (v) VALUES ('{fmt}'); SELECT CAST(X'41FF42' AS TEXT) AS bad")
            self.assertEqual(out["ResponseMetadata"]["HTTPStatusCode"], 200)
            if fmt == "JSON":
                self.assertEqual(json.loads(out["formattedRecords"]), [{"bad": "A\ufffdB"}])
            else:
                self.assertEqual(out["records"], [[{"stringValue": "A\ufffdB"}]])
        self.assertEqual(self.count(), 2)

    def test_a_mistyped_option_is_refused_before_the_statement_runs(self):
        for option in ({"includeResultMetadata": "yes"}, {"formatRecordsAs": 5}, {"formatRecordsAs": "XML"},
                       {"continueAfterTimeout": "no"}, {"parameters": [{"name": "a", "value": {"longValue": "1"}}]},
                       {"transactionId": 7}):
            body = dict({"resourceArn": self.arn, "secretArn": SECRET,
                         "sql": "INSERT INTO t (v) VALUES (1); SELECT 1"}, **option)
            status, headers, text = self.signed_post("/Execute", json.dumps(body))
            self.assertEqual(status, 400, f"{option}: {text}")
            self.assertEqual(headers.get("x-amzn-ErrorType"), "BadRequestException", f"{option}: {headers}")
            self.assertIn("message", json.loads(text))
        self.assertEqual(self.count(), 0)

    def test_a_request_that_is_not_json_answers_json(self):
        status, headers, text = self.signed_post("/Execute", "{not json")
        self.assertEqual(status, 400)
        self.assertEqual(headers.get("x-amzn-ErrorType"), "BadRequestException")
        self.assertIn("message", json.loads(text))

    # --- item 7: out-of-range values ---

    def test_long_value_out_of_range_is_refused(self):
        for value in (18446744073709551615, 9223372036854775808, -9223372036854775809):
            self.assert_bad_request("INSERT INTO t (v) VALUES (:x)", "longValue",
                                    parameters=[{"name": "x", "value": {"longValue": value}}])
        self.assertEqual(self.count(), 0)
        # The limits themselves are values like any other.
        for value in (9223372036854775807, -9223372036854775808):
            self.run_sql("INSERT INTO t (v) VALUES (:x)", parameters=[{"name": "x", "value": {"longValue": value}}])
        out = self.run_sql("SELECT v FROM t ORDER BY v")
        self.assertEqual(out["records"], [[{"longValue": -9223372036854775808}], [{"longValue": 9223372036854775807}]])

    def test_batch_parameters_are_all_checked_before_any_runs(self):
        tx = self.data.begin_transaction(resourceArn=self.arn, secretArn=SECRET)["transactionId"]
        with self.assertRaises(self.data.exceptions.BadRequestException):
            self.data.batch_execute_statement(
                resourceArn=self.arn, secretArn=SECRET, sql="INSERT INTO t (v) VALUES (:x)", transactionId=tx,
                parameterSets=[[{"name": "x", "value": {"longValue": 1}}],
                               [{"name": "x", "value": {"longValue": 18446744073709551615}}]])
        self.data.commit_transaction(resourceArn=self.arn, secretArn=SECRET, transactionId=tx)
        self.assertEqual(self.count(), 0)

    # --- item 9: NUL, deadlines, result size ---

    def test_sql_with_a_nul_is_refused_quickly(self):
        key, secret = self.credentials()
        quick = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                      region_name="us-east-1").client(
            "rds-data", endpoint_url=self.server.endpoint,
            config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=10))
        for sql in ("SELECT 1;\x00", "SELECT 1\x00; DROP TABLE t", "\x00"):
            start = time.monotonic()
            with self.assertRaises(quick.exceptions.BadRequestException) as e:
                quick.execute_statement(resourceArn=self.arn, secretArn=SECRET, sql=sql)
            self.assertIn("NUL", str(e.exception))
            self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(self.run_sql("SELECT count(*) FROM t")["records"], [[{"longValue": 0}]])

    def test_a_runaway_query_ends_with_the_statement_timeout(self):
        runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        start = time.monotonic()
        with self.assertRaises(self.data.exceptions.StatementTimeoutException):
            self.run_sql(runaway)
        took = time.monotonic() - start
        print(f"\nrunaway query answered after {took:.2f} s (deadline {STATEMENT_TIMEOUT_SECONDS} s)")
        self.assertGreaterEqual(took, STATEMENT_TIMEOUT_SECONDS * 0.9)
        self.assertLess(took, STATEMENT_TIMEOUT_SECONDS + 3)
        # Inside a transaction too; the worker is free again afterwards.
        tx = self.data.begin_transaction(resourceArn=self.arn, secretArn=SECRET)["transactionId"]
        with self.assertRaises(self.data.exceptions.StatementTimeoutException):
            self.run_sql(runaway, transactionId=tx)
        self.data.rollback_transaction(resourceArn=self.arn, secretArn=SECRET, transactionId=tx)
        self.assertEqual(self.run_sql("SELECT 1")["records"], [[{"longValue": 1}]])

    def test_a_result_over_one_mib_is_refused_without_building_it(self):
        base = rss_peak_kib(self.server.proc.pid)
        for sql in ("SELECT zeroblob(400000000)", "SELECT randomblob(600000), randomblob(600000)",
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) "
                    "SELECT x, 'some text to fill' FROM c"):
            self.assert_bad_request(sql, "Database returned more than the allowed response size limit")
        peak = rss_peak_kib(self.server.proc.pid)
        print(f"\npeak RSS {base} KiB before, {peak} KiB after the oversized results")
        self.assertLess(peak - base, 64 * 1024, f"peak RSS grew from {base} KiB to {peak} KiB")
        # Just under the limit is fine.
        out = self.run_sql("SELECT randomblob(700000) AS b")
        self.assertEqual(len(out["records"]), 1)

    # --- item 11: an open transaction does not stall the others ---

    def test_writers_queue_behind_an_open_transaction_without_stalling_it(self):
        tx = self.data.begin_transaction(resourceArn=self.arn, secretArn=SECRET)["transactionId"]
        self.run_sql("INSERT INTO t (v) VALUES ('tx')", transactionId=tx)
        results, lock = [], threading.Lock()
        clients = [self.client("rds-data") for _ in range(8)]
        sent = [threading.Event() for _ in range(8)]
        for client, event in zip(clients, sent):
            client.meta.events.register("before-send.rds-data.ExecuteStatement",
                                        lambda event=event, **kw: event.set())

        def writer(i):
            client = clients[i]
            start = time.monotonic()
            try:
                client.execute_statement(resourceArn=self.arn, secretArn=SECRET,
                                         sql=f"INSERT INTO t (v) VALUES ('w{i}')")
                outcome = "ok"
            except client.exceptions.BadRequestException as e:
                outcome = str(e)
            with lock:
                results.append((outcome, time.monotonic() - start))

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        for th in threads:
            th.start()
        # The writers do not all wait for the transaction: some are answered
        # at once (the queue per instance is bounded), while it is still open.
        wait_until(lambda: all(e.is_set() for e in sent), timeout=20, what="the writers' requests sent")
        wait_until(lambda: len(results) > 0, timeout=7, what="a first writer answered while the transaction is open")
        start = time.monotonic()
        self.data.commit_transaction(resourceArn=self.arn, secretArn=SECRET, transactionId=tx)
        commit_took = time.monotonic() - start
        for th in threads:
            th.join(timeout=60)
        self.assertLess(commit_took, 2.0, results)
        self.assertEqual(len(results), 8)
        for outcome, took in results:
            if outcome != "ok":
                self.assertIn("busy", outcome)
                self.assertLess(took, 7.0, results)
        ok = sum(1 for outcome, _ in results if outcome == "ok")
        self.assertGreater(ok, 0, results)
        self.assertEqual(self.count(), 1 + ok)
        print(f"\ncommit {commit_took:.3f} s; writers: " +
              ", ".join(f"{'ok' if o == 'ok' else 'busy'} {t:.2f} s" for o, t in sorted(results, key=lambda r: r[1])))

    def test_a_writer_gets_a_clear_error_while_a_transaction_holds_the_lock(self):
        tx = self.data.begin_transaction(resourceArn=self.arn, secretArn=SECRET)["transactionId"]
        self.run_sql("INSERT INTO t (v) VALUES ('tx')", transactionId=tx)
        start = time.monotonic()
        self.assert_bad_request("INSERT INTO t (v) VALUES ('other')", "busy")
        self.assertLess(time.monotonic() - start, 7.0)
        # Reads are not blocked by the open transaction.
        self.assertEqual(self.run_sql("SELECT count(*) FROM t")["records"], [[{"longValue": 0}]])
        self.data.commit_transaction(resourceArn=self.arn, secretArn=SECRET, transactionId=tx)
        self.run_sql("INSERT INTO t (v) VALUES ('after')")
        self.assertEqual(self.count(), 2)


@unittest.skipIf(PG_BIN is None, "PostgreSQL server programs are not installed")
class DataApiSecurityPostgres(StrataTestCase):
    def setUp(self):
        start_with_short_deadline(self)
        rds = self.client()
        self.arn = rds.create_db_instance(DBInstanceIdentifier="pg", DBInstanceClass="db.t3.micro", Engine="postgres",
                                          MasterUsername="appuser", MasterUserPassword="s3cret-pass", DBName="app",
                                          BackupRetentionPeriod=0)["DBInstance"]["DBInstanceArn"]
        wait_until(lambda: rds.describe_db_instances(DBInstanceIdentifier="pg")["DBInstances"][0]["DBInstanceStatus"]
                   == "available", timeout=180, what="pg available")
        self.data = self.client("rds-data")

    def run_sql(self, sql, **kw):
        return self.data.execute_statement(resourceArn=self.arn, secretArn=SECRET, sql=sql, **kw)

    def test_statement_timeout_and_result_size(self):
        start = time.monotonic()
        with self.assertRaises(self.data.exceptions.StatementTimeoutException):
            self.run_sql("SELECT pg_sleep(30)")
        self.assertLess(time.monotonic() - start, STATEMENT_TIMEOUT_SECONDS + 3)
        # A session cannot lift its own deadline.
        start = time.monotonic()
        with self.assertRaises(self.data.exceptions.StatementTimeoutException):
            self.run_sql("SET statement_timeout = 0; SELECT pg_sleep(30)")
        self.assertLess(time.monotonic() - start, STATEMENT_TIMEOUT_SECONDS + 3)
        base = rss_peak_kib(self.server.proc.pid)
        for sql in ("SELECT repeat('x', 2000000)", "SELECT g, 'some text to fill' FROM generate_series(1, 2000000) g"):
            with self.assertRaises(self.data.exceptions.BadRequestException) as e:
                self.run_sql(sql)
            self.assertIn("Database returned more than the allowed response size limit", str(e.exception))
        self.assertLess(rss_peak_kib(self.server.proc.pid) - base, 64 * 1024)
        with self.assertRaises(self.data.exceptions.BadRequestException):
            self.run_sql("SELECT :x::bigint", parameters=[{"name": "x", "value": {"longValue": 18446744073709551615}}])
        self.assertEqual(self.run_sql("SELECT 1")["records"], [[{"longValue": 1}]])


if __name__ == "__main__":
    unittest.main()
