"""The manual clock of `stratad --clock manual` (tests only): forty days of
automated backups, retention and point-in-time restore driven through the
aws CLI and `strata clock`, without waiting; and that the clock endpoint
exists in that mode only, signed like every other request."""
import datetime
import json
import os
import sqlite3
import subprocess
import tempfile
import shutil
import unittest
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness import STRATAD, StrataTestCase, wait_until

START = "2026-11-01T03:10:00Z"  # inside the backup window below
WINDOW = "03:00-03:30"
RETENTION = 7
DAY = 86400.0


def ts(value):
    """Epoch seconds of a timestamp from boto3 (datetime) or JSON (ISO string)."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ClockRequests:
    """Requests to the clock endpoint, signed with botocore (or not at all)."""

    def request(self, method, path, body=None, service="strata", sign=True):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        req = AWSRequest(method=method, url=self.server.endpoint + path, data=data, headers=headers)
        if sign:
            SigV4Auth(Credentials(*self.credentials()), service, "us-east-1").add_auth(req)
        r = urllib.request.Request(req.url, data=data, method=method, headers=dict(req.headers.items()))
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


class ManualClockTest(StrataTestCase, ClockRequests):
    STRATAD_ARGS = ("--clock", "manual", "--clock-start", START)

    def now(self):
        return ts(self.strata("clock", "get").stdout.strip())

    def advance(self, duration, *extra):
        return ts(self.strata("clock", "advance", duration, *extra).stdout.strip())

    def automated(self, name):
        """Oldest first (ids carry the time; SnapshotCreateTime comes once available)."""
        snaps = self.rds().describe_db_snapshots(DBInstanceIdentifier=name, SnapshotType="automated")
        return sorted(snaps["DBSnapshots"], key=lambda s: s["DBSnapshotIdentifier"])

    def all_available(self, name):
        snaps = self.automated(name)
        return snaps if all(s["Status"] == "available" for s in snaps) else None

    def latest_restorable(self, name):
        inst = self.rds().describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
        return ts(inst["LatestRestorableTime"]) if "LatestRestorableTime" in inst else None

    def wait_latest_is(self, name, t):
        """LatestRestorableTime reaches t: the capture has read every commit made before it."""
        wait_until(lambda: self.latest_restorable(name) == t, timeout=30,
                   what=f"{name}'s LatestRestorableTime at {iso(t)} (is {self.latest_restorable(name)})")

    def days(self, name):
        path = self.strata("instance", "path", name).stdout.strip()
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [d for (d,) in db.execute("SELECT day FROM days ORDER BY day")]
        finally:
            db.close()

    def test_the_start_is_said_loudly_and_the_clock_stands_still(self):
        self.assertIn("MANUAL CLOCK: time moves only when told; for tests only", self.server.tail(200))
        self.assertEqual(self.now(), ts(START))
        self.assertEqual(self.now(), ts(START), "no time passes unless told")
        self.assertEqual(self.advance("90s"), ts(START) + 90)
        self.assertEqual(self.advance("15m"), ts(START) + 90 + 900)
        later = "2026-11-05T00:00:00Z"
        self.assertEqual(ts(self.strata("clock", "set", later).stdout.strip()), ts(later))
        back = self.strata("clock", "set", START, expect_rc=1)
        self.assertIn("only moves forward", back.stderr)
        self.assertIn("not a duration", self.strata("clock", "advance", "1w", expect_rc=1).stderr)
        self.assertEqual(self.now(), ts(later))

    def test_the_endpoint_is_signed_like_every_request(self):
        status, body = self.request("GET", "/strata/clock")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["now"], "2026-11-01T03:10:00.000Z")
        status, body = self.request("POST", "/strata/clock/advance", {"seconds": DAY}, sign=False)
        self.assertEqual(status, 403, body)
        status, body = self.request("POST", "/strata/clock/advance", {"seconds": DAY}, service="rds")
        self.assertEqual(status, 403, body)
        for seconds in (-1, -1e300, 1e300, "1d"):
            status, body = self.request("POST", "/strata/clock/advance", {"seconds": seconds})
            self.assertEqual(status, 400, f"{seconds}: {body}")
        status, body = self.request("POST", "/strata/clock/nothing", {})
        self.assertEqual(status, 404, body)
        self.assertEqual(self.now(), ts(START), "no refused request moved the clock")

    def test_forty_days_of_automated_backups_retention_and_restores(self):
        self.create_instance("app", "--backup-retention-period", str(RETENTION),
                             "--preferred-backup-window", WINDOW,
                             "--preferred-maintenance-window", "sun:05:00-sun:05:30")
        self.strata("sql", "app", "-c", "CREATE TABLE days (day INTEGER)")
        self.assertEqual(len(self.automated("app")), 1, "the first base is taken at once")
        now = self.now()
        inserted_at = {}
        for day in range(1, 41):
            self.strata("sql", "app", "-c", f"INSERT INTO days (day) VALUES ({day})")
            inserted_at[day] = now
            # The restorable time follows the manual clock, and once it has,
            # the insert is in the change log.
            now = self.advance("1m")
            self.wait_latest_is("app", now)
            before = [s["DBSnapshotIdentifier"] for s in self.automated("app")]
            now = ts(self.strata("clock", "set", iso(inserted_at[day] + DAY / 2)).stdout.strip())
            self.assertEqual([s["DBSnapshotIdentifier"] for s in self.automated("app")], before,
                             "no automated snapshot outside the backup window")
            # Into the next day's window: the pass has begun that day's snapshot.
            now = self.advance("12h")
            begun = [s["DBSnapshotIdentifier"] for s in self.automated("app") if s["DBSnapshotIdentifier"] not in before]
            self.assertEqual(begun, ["rds:app-" + iso(now)[:10] + "-03-10"], f"day {day}")
            snaps = wait_until(lambda: self.all_available("app"), timeout=60, what=f"day {day}'s snapshot")
            self.assertEqual(ts(snaps[-1]["SnapshotCreateTime"]), now)
            self.assertLessEqual(len(snaps), RETENTION + 1, f"day {day}: retention keeps {len(snaps)}")
            self.assertGreaterEqual(len(snaps), min(day + 1, RETENTION))

        # Once a day, in the window, and only what retention needs.
        snaps = self.aws("rds", "describe-db-snapshots", "--db-instance-identifier", "app",
                         "--snapshot-type", "automated")["DBSnapshots"]
        for s in snaps:
            self.assertEqual(s["SnapshotCreateTime"][11:16], "03:10", s["DBSnapshotIdentifier"])
            self.assertGreaterEqual(ts(s["SnapshotCreateTime"]), now - (RETENTION + 1) * DAY)
        self.assertEqual(len({s["SnapshotCreateTime"][:10] for s in snaps}), len(snaps), "one a day")

        # The restore window moves with the manual clock.
        self.wait_latest_is("app", now)
        inst = self.aws("rds", "describe-db-instances", "--db-instance-identifier", "app")["DBInstances"][0]
        self.assertEqual(ts(inst["LatestRestorableTime"]), now)
        window = self.aws("rds", "describe-db-instance-automated-backups", "--db-instance-identifier",
                          "app")["DBInstanceAutomatedBackups"][0]["RestoreWindow"]
        self.assertEqual(ts(window["EarliestTime"]), now - RETENTION * DAY)
        self.assertEqual(ts(window["LatestTime"]), now)

        # Inside the window: exactly the days inserted by then.
        self.aws("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier", "app",
                 "--target-db-instance-identifier", "app-36", "--restore-time", iso(inserted_at[36] + 120))
        self.wait_available("app-36")
        self.assertEqual(self.days("app-36"), list(range(1, 37)))
        # Before it: refused, as RDS does.
        code = self.aws_error("rds", "restore-db-instance-to-point-in-time", "--source-db-instance-identifier",
                              "app", "--target-db-instance-identifier", "too-old",
                              "--restore-time", iso(now - RETENTION * DAY - 3600))
        self.assertEqual(code, "InvalidRestoreFault")

        # Three more days a step at a time: a pass and a snapshot each.
        now = self.advance("3d", "--step", "1d")
        self.assertEqual(now, ts(START) + 43 * DAY)
        snaps = wait_until(lambda: self.all_available("app"), timeout=60, what="the last snapshots")
        self.assertEqual([ts(s["SnapshotCreateTime"]) for s in snaps[-3:]], [now - 2 * DAY, now - DAY, now])
        self.assertLessEqual(len(snaps), RETENTION + 1)
        self.wait_latest_is("app", now)
        window = self.aws("rds", "describe-db-instance-automated-backups", "--db-instance-identifier",
                          "app")["DBInstanceAutomatedBackups"][0]["RestoreWindow"]
        self.assertEqual(ts(window["EarliestTime"]), now - RETENTION * DAY)


class SystemClockTest(StrataTestCase, ClockRequests):
    def refusal(self, path):
        """The HTTP status and AWS error code a signed GET of path gets."""
        status, body = self.request("GET", path)
        return status, body.decode().split("<Code>", 1)[-1].split("</Code>", 1)[0]

    def test_the_clock_endpoint_does_not_exist(self):
        cli = self.strata("clock", "get", expect_rc=1)
        self.assertIn("--clock manual", cli.stderr)
        self.assertEqual(self.refusal("/strata/clock"), self.refusal("/strata/no-such-path"),
                         "answered as any unknown path")
        status, _ = self.request("POST", "/strata/clock/advance", {"seconds": DAY})
        self.assertNotEqual(status, 200)
        self.assertNotIn("MANUAL CLOCK", self.server.tail(200))


class ClockFlagTest(unittest.TestCase):
    def refused(self, *args):
        tmp = tempfile.mkdtemp(prefix="strata-it-")
        self.addCleanup(shutil.rmtree, tmp, True)
        p = subprocess.run([STRATAD, "--data-dir", os.path.join(tmp, "data"), "--listen", "127.0.0.1:0", *args],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        return p.stderr

    def test_other_clocks_refuse_to_start(self):
        self.assertIn("--clock must be system or manual", self.refused("--clock", "bogus"))
        self.assertIn("--clock-start needs --clock manual", self.refused("--clock-start", START))
        self.assertIn("--clock-start must be an ISO 8601 time",
                      self.refused("--clock", "manual", "--clock-start", "yesterday"))


if __name__ == "__main__":
    unittest.main()
