"""The HTTP layer under slow, idle, oversized, malformed and excessive clients
(issue 20 items 10 and 13, issue 21 items 1 and 6): raw sockets where a real
client would not misbehave, boto3 for the body sizes and the throttling codes."""
import json
import select
import signal
import socket
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import botocore.exceptions

from harness import StrataTestCase, Stratad, proc_status_kib, wait_until

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:any"
MIB = 1 << 20


def address(endpoint):
    u = urllib.parse.urlparse(endpoint)
    return u.hostname, u.port


def read_response(sock, timeout=10.0):
    """Reads one HTTP answer from sock: (status, headers with lower-case names, body)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer (got {buf!r})")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def exchange(endpoint, data, timeout=10.0):
    """Sends raw bytes on a new connection and reads the answer."""
    with socket.create_connection(address(endpoint), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before taking everything: read its answer
        return read_response(s, timeout)


def xml_error_code(body):
    root = ET.fromstring(body)
    codes = [el.text for el in root.iter() if el.tag.endswith("Code")]
    ids = [el.text for el in root.iter() if el.tag.endswith("RequestId")]
    assert root.tag.endswith("ErrorResponse") and codes and ids, body
    return codes[0]




def timed(fn):
    start = time.monotonic()
    fn()
    return time.monotonic() - start


class HttpLayer(StrataTestCase):
    def restart_with(self, *args):
        self.server.stop()
        self.server = Stratad(self.data_dir, list(args)).start()

    def health(self):
        with urllib.request.urlopen(self.server.endpoint + "/health", timeout=5) as r:
            self.assertEqual(r.status, 200)

    def assert_logged(self, request_id, status):
        def found():
            with open(self.server.log_path) as f:
                for line in f:
                    if request_id in line:
                        entry = json.loads(line)
                        return entry if entry.get("status") == status else None
            return None
        return wait_until(found, timeout=5, what=f"a log line for request {request_id}")

    def test_slow_and_idle_connections_do_not_stall_anyone(self):
        rds = self.client()
        idle = []
        for _ in range(200):
            s = socket.create_connection(address(self.server.endpoint), timeout=5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: strata\r\n\r\n")
            self.assertEqual(read_response(s)[0], 200)
            idle.append(s)  # keep-alive, now idle
        slow = []
        for _ in range(200):
            s = socket.create_connection(address(self.server.endpoint), timeout=5)
            s.sendall(b"POST / HTTP/1.1\r\nHost: strata\r\n")
            slow.append(s)
        self.addCleanup(lambda: [s.close() for s in idle + slow])

        health_times, describe_times = [], []
        start = time.monotonic()
        next_line = start + 2.0
        line_no = 0
        while time.monotonic() - start < 7.0:
            if time.monotonic() >= next_line:
                line_no += 1
                for s in slow:
                    s.sendall(f"X-Slow-{line_no}: still here\r\n".encode())
                next_line += 2.0
            health_times.append(timed(self.health))
            describe_times.append(timed(rds.describe_db_instances))
        print(f"\n400 slow/idle connections: /health max {max(health_times) * 1000:.1f} ms "
              f"({len(health_times)} probes), DescribeDBInstances max {max(describe_times) * 1000:.1f} ms")
        self.assertLess(max(health_times), 1.0)
        self.assertLess(max(describe_times), 1.0)
        # Within the header timeout, the slow clients are still being waited for.
        for s in slow:
            readable, _, _ = select.select([s], [], [], 0)
            self.assertEqual(readable, [], "a slow client within the header timeout was cut off")

    def test_slow_head_and_idle_keep_alive_are_cut_off_by_their_timeouts(self):
        self.restart_with("--http-header-timeout", "2", "--http-idle-timeout", "3")
        slow = socket.create_connection(address(self.server.endpoint), timeout=10)
        self.addCleanup(slow.close)
        start = time.monotonic()
        slow.sendall(b"GET /?Action=DescribeDBInstances HTTP/1.1\r\nHost: strata\r\n")
        answered = None
        while time.monotonic() - start < 8:
            readable, _, _ = select.select([slow], [], [], 0.5)
            if readable:
                answered = time.monotonic() - start
                break
            slow.sendall(b"X-Slow: 1\r\n")  # a header line every 0.5 s, never the end
        self.assertIsNotNone(answered, "a head still unfinished after 8 s was not cut off")
        self.assertGreater(answered, 1.5)
        self.assertLess(answered, 4.0)
        status, headers, body = read_response(slow)
        self.assertEqual(status, 408)
        self.assertEqual(headers.get("connection"), "close")
        self.assertEqual(xml_error_code(body), "RequestTimeout")
        self.assert_logged(headers["x-amzn-requestid"], 408)

        idle = socket.create_connection(address(self.server.endpoint), timeout=10)
        self.addCleanup(idle.close)
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: strata\r\n\r\n")
        self.assertEqual(read_response(idle)[0], 200)
        start = time.monotonic()
        self.assertEqual(idle.recv(1), b"")  # the server closes it
        self.assertLess(time.monotonic() - start, 5.0)
        self.assertGreater(time.monotonic() - start, 2.0)

    def test_a_huge_chunked_body_is_refused_early_without_memory_growth(self):
        pid = self.server.proc.pid
        rss_before = proc_status_kib(pid, "VmRSS")
        hwm_before = proc_status_kib(pid, "VmHWM")
        s = socket.create_connection(address(self.server.endpoint), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"POST / HTTP/1.1\r\nHost: strata\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"
        sent = 0
        rss_peak = rss_before
        while sent < 64 * MIB:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break  # the server answered: stop sending
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 0x10000
            rss_peak = max(rss_peak, proc_status_kib(pid, "VmRSS"))
        status, headers, body = read_response(s)
        rss_after = proc_status_kib(pid, "VmRSS")
        hwm_after = proc_status_kib(pid, "VmHWM")
        print(f"\nchunked attack: refused after {sent / MIB:.1f} MiB sent; RSS {rss_before / 1024:.1f} MiB "
              f"before, {rss_peak / 1024:.1f} MiB peak sampled, {rss_after / 1024:.1f} MiB after; "
              f"VmHWM {hwm_before / 1024:.1f} -> {hwm_after / 1024:.1f} MiB")
        self.assertEqual(status, 413)
        self.assertEqual(xml_error_code(body), "RequestEntityTooLarge")
        self.assertLess(sent, 32 * MIB, "the body was read far past the limit before the refusal")
        self.assertLess(max(rss_peak, rss_after) - rss_before, 20 * 1024)
        self.assertLess(hwm_after - hwm_before, 20 * 1024)
        self.health()

    def test_malformed_requests_get_an_aws_error_and_the_server_stays_up(self):
        cases = [
            ("Content-Length -5", b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: -5\r\n\r\n",
             400, "BadRequest"),
            ("huge Content-Length", b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 99999999999999\r\n\r\n",
             413, "RequestEntityTooLarge"),
            ("20 KB request line", b"GET /?Action=" + b"A" * 20000 + b" HTTP/1.1\r\nHost: s\r\n\r\n",
             414, "RequestURITooLong"),
            ("100 KB header", b"GET / HTTP/1.1\r\nHost: s\r\nX-Big: " + b"b" * 100000 + b"\r\n\r\n",
             431, "RequestHeaderFieldsTooLarge"),
            ("bad chunk", b"POST / HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
             400, "BadRequest"),
            ("garbage request line", b"GARBAGE\r\n\r\n", 400, "BadRequest"),
        ]
        for name, raw, want_status, want_code in cases:
            with self.subTest(name):
                status, headers, body = exchange(self.server.endpoint, raw)
                self.assertEqual(status, want_status, body)
                self.assertEqual(headers.get("connection"), "close")
                self.assertEqual(xml_error_code(body), want_code)
                entry = self.assert_logged(headers["x-amzn-requestid"], want_status)
                self.assertEqual(entry["error"], want_code)
                self.health()
        # On a Data API path the answer is the Data API's JSON envelope.
        status, headers, body = exchange(
            self.server.endpoint, b"POST /Execute HTTP/1.1\r\nHost: s\r\nContent-Length: 2000000\r\n\r\n")
        self.assertEqual(status, 413)
        self.assertEqual(headers.get("x-amzn-errortype"), "BadRequestException")
        self.assertIn("message", json.loads(body))
        entry = self.assert_logged(headers["x-amzn-requestid"], 413)
        self.assertEqual((entry["action"], entry["path"]), ("Execute", "/Execute"))
        self.health()

    def test_query_api_bodies_up_to_one_mib(self):
        rds = self.client()
        sizes = []
        rds.meta.events.register("before-send.rds.DescribeDBInstances",
                                 lambda request, **_: sizes.append(len(request.body)))

        def describe_with_body_of(n):
            # The padding is one filter value of 'a's, which need no percent-encoding.
            rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["a"]}])
            pad = n - (sizes[-1] - 1)
            try:
                return rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["a" * pad]}])
            finally:
                self.assertEqual(sizes[-1], n)

        for n in (8192, 8193, 64 * 1024, MIB):
            self.assertEqual(describe_with_body_of(n)["DBInstances"], [], n)
        with self.assertRaises(botocore.exceptions.ClientError) as e:
            describe_with_body_of(MIB + 1)
        self.assertEqual(e.exception.response["Error"]["Code"], "RequestEntityTooLarge")
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 413)

    def test_fifty_full_length_tags(self):
        arn = self.create_instance("tagged")["DBInstanceArn"]
        rds = self.client()
        tags = [{"Key": f"{i:02d}" + "k" * 126, "Value": "v" * 256} for i in range(50)]
        rds.add_tags_to_resource(ResourceName=arn, Tags=tags)
        listed = rds.list_tags_for_resource(ResourceName=arn)["TagList"]
        self.assertEqual(sorted(t["Key"] for t in listed), sorted(t["Key"] for t in tags))

    def test_overload_is_answered_with_the_throttling_codes(self):
        self.restart_with("--http-workers", "1", "--http-queue", "0")
        arn = self.create_instance("busy")["DBInstanceArn"]
        data = self.client("rds-data")
        rds = self.client()
        slow_sql = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) "
                    "SELECT count(*) FROM c")
        slow_done = threading.Event()

        def occupy_the_worker():
            try:
                data.execute_statement(resourceArn=arn, secretArn=SECRET, sql=slow_sql)
            except Exception:  # a statement deadline may end it: it only has to take a while
                pass
            finally:
                slow_done.set()
        worker = threading.Thread(target=occupy_the_worker, daemon=True)
        worker.start()
        self.addCleanup(worker.join, 120)

        def throttled():
            if slow_done.is_set():
                raise AssertionError("the slow statement ended before any request was throttled")
            try:
                rds.describe_db_instances()
                return None
            except botocore.exceptions.ClientError as e:
                return e.response
        response = wait_until(throttled, timeout=20, what="a throttled DescribeDBInstances")
        self.assertEqual(response["Error"]["Code"], "Throttling")
        self.assertEqual(response["ResponseMetadata"]["HTTPStatusCode"], 400)
        # The Data API answers its own code; the refusal is immediate, not queued.
        start = time.monotonic()
        with self.assertRaises(botocore.exceptions.ClientError) as e:
            data.execute_statement(resourceArn=arn, secretArn=SECRET, sql="SELECT 1")
        self.assertLess(time.monotonic() - start, 1.0)
        if not slow_done.is_set():
            self.assertEqual(e.exception.response["Error"]["Code"], "ThrottlingException")
            self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 429)
        self.assertLess(timed(self.health), 1.0)  # answered on the I/O thread
        # Both codes are ones botocore's retry handlers back off from.
        from botocore.retries.standard import ThrottledRetryableChecker
        self.assertIn("Throttling", ThrottledRetryableChecker._THROTTLED_ERROR_CODES)
        self.assertIn("ThrottlingException", ThrottledRetryableChecker._THROTTLED_ERROR_CODES)

    def test_sigterm_does_not_wait_for_idle_keep_alive_connections(self):
        conns = []
        for _ in range(10):
            s = socket.create_connection(address(self.server.endpoint), timeout=5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: strata\r\n\r\n")
            self.assertEqual(read_response(s)[0], 200)
            conns.append(s)
        self.addCleanup(lambda: [s.close() for s in conns])
        proc = self.server.proc
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: proc.poll() is not None, timeout=10, what="stratad to exit")
        took = time.monotonic() - start
        print(f"\nSIGTERM with 10 idle keep-alive connections: exited in {took * 1000:.0f} ms")
        self.assertEqual(proc.returncode, 0)
        self.assertLess(took, 2.0)

    def test_sigterm_lets_a_request_being_handled_finish(self):
        self.restart_with("--http-workers", "1", "--http-queue", "0")
        arn = self.create_instance("inflight")["DBInstanceArn"]
        data = self.client("rds-data")
        slow_sql = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) "
                    "SELECT count(*) FROM c")
        outcome = {}

        def run():
            try:
                outcome["records"] = data.execute_statement(resourceArn=arn, secretArn=SECRET, sql=slow_sql)["records"]
            except botocore.exceptions.ClientError as e:
                outcome["code"] = e.response["Error"]["Code"]  # an answer all the same
            except Exception as e:  # no answer: the connection was dropped
                outcome["lost"] = repr(e)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        # With one worker and no queue, a throttled DescribeDBInstances proves
        # the statement holds the worker.
        rds = self.client()

        def worker_busy():
            try:
                rds.describe_db_instances()
                return False
            except botocore.exceptions.ClientError as e:
                return e.response["Error"]["Code"] == "Throttling"
        wait_until(worker_busy, timeout=20, what="the statement to hold the worker")
        proc = self.server.proc
        proc.send_signal(signal.SIGTERM)
        t.join(60)
        wait_until(lambda: proc.poll() is not None, timeout=30, what="stratad to exit")
        self.assertNotIn("lost", outcome, outcome)
        self.assertEqual(proc.returncode, 0)


if __name__ == "__main__":
    import unittest
    unittest.main()
