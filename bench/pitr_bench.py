#!/usr/bin/python3
"""Point-in-time benchmark through the real API (issue 5):
  - LatestRestorableTime lag (p50, p99) under a steady write load;
  - a writer's throughput with capture on (retention 1) vs off (retention 0),
    the same writer in the same run;
  - point-in-time restore of a base of --size-mib plus --log-mib of change log,
    against restore-from-snapshot of the same base.

  bench/pitr_bench.py --stratad build-release/bin/stratad [--size-mib 1024 --log-mib 200]
  bench/pitr_bench.py --stratad build/bin/stratad --seconds 20 --rounds 10 --throughput-only
"""
import argparse
import datetime
import os
import shutil
import sqlite3
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import benchlib  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def wait_status(rds, name, status="available"):
    while rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["DBInstanceStatus"] != status:
        time.sleep(0.05)


def path_of(rds, name):
    return rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["Endpoint"]["Address"]


def writer(path, seconds, stop=None):
    """Commits small transactions as fast as it can; returns commits/s."""
    with sqlite3.connect(path, isolation_level=None, timeout=10) as db:
        db.execute("CREATE TABLE IF NOT EXISTS w (id INTEGER PRIMARY KEY, v TEXT)")
        n, end = 0, time.monotonic() + seconds
        while time.monotonic() < end and not (stop and stop.is_set()):
            db.execute("INSERT INTO w (v) VALUES (?)", ("x" * 200,))
            n += 1
    return n / seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stratad", default="build-release/bin/stratad")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--log-mib", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2,
                    help="off/on alternations for the throughput ratio (--seconds split over them)")
    ap.add_argument("--warmup", type=float, default=0,
                    help="seconds each writer runs, untimed, before the throughput rounds")
    ap.add_argument("--throughput-only", action="store_true", help="stop after the throughput ratio and the lag")
    args = ap.parse_args()
    server, _, rds, tmp = benchlib.start_server(args.stratad)
    try:
        for name, retention in (("on", 1), ("off", 0)):
            rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="sqlite",
                                   BackupRetentionPeriod=retention)
            wait_status(rds, name)
        while "LatestRestorableTime" not in rds.describe_db_instances(DBInstanceIdentifier="on")["DBInstances"][0]:
            time.sleep(0.05)

        # Throughput, alternating so neither gets the warmer machine.
        rates = {"on": [], "off": []}
        # An idle connection to each database for the whole measurement: when
        # a writer closes the last connection SQLite deletes the WAL, and the
        # next writer would pay for growing it again. Capture keeps its own
        # connections open, so without this the capture-off writer alone
        # would pay that every round.
        keepers = [sqlite3.connect(path_of(rds, name)) for name in ("off", "on")]
        if args.warmup > 0:
            for name in ("off", "on"):
                writer(path_of(rds, name), args.warmup)
        for i in range(args.rounds):
            for name in (("off", "on") if i % 2 == 0 else ("on", "off")):
                rates[name].append(writer(path_of(rds, name), args.seconds / args.rounds))
        on, off = statistics.mean(rates["on"]), statistics.mean(rates["off"])
        ratios = [a / b for a, b in zip(rates["on"], rates["off"])]
        for k in keepers:
            k.close()

        # Lag of LatestRestorableTime while the writer runs.
        stop = threading.Event()
        w = threading.Thread(target=writer, args=(path_of(rds, "on"), args.seconds * 2, stop))
        w.start()
        lags = []
        end = time.time() + args.seconds
        while time.time() < end:
            lrt = rds.describe_db_instances(DBInstanceIdentifier="on")["DBInstances"][0]["LatestRestorableTime"]
            lags.append(time.time() - lrt.timestamp())
            time.sleep(0.1)  # the sampling rate, not a synchronization
        stop.set()
        w.join()
        print("rounds on/off:", " ".join(f"{r:.2f}" for r in ratios))
        print(f"writer, capture off            {off:10.0f} commits/s")
        print(f"writer, capture on             {on:10.0f} commits/s   ratio {on / off:.3f}"
              f"   (per round {min(ratios):.2f}-{max(ratios):.2f}, median {statistics.median(ratios):.3f})")
        print(f"LatestRestorableTime lag       p50 {statistics.median(lags):.3f} s   p99 {pct(lags, 0.99):.3f} s"
              f"   ({len(lags)} samples)", flush=True)
        if args.throughput_only:
            return

        # A base of size-mib, then log-mib of changes, then restore both ways.
        path = path_of(rds, "on")
        rows = benchlib.fill(path, args.size_mib)
        rds.create_db_snapshot(DBInstanceIdentifier="on", DBSnapshotIdentifier="base")
        while rds.describe_db_snapshots(DBSnapshotIdentifier="base")["DBSnapshots"][0]["Status"] != "available":
            time.sleep(0.05)
        logged = 0
        with sqlite3.connect(path, isolation_level=None) as db:
            import random
            while logged < args.log_mib * 1048576:
                db.execute("BEGIN")
                for _ in range(50):
                    db.execute("UPDATE t SET blob = randomblob(1000) WHERE id = ?", (random.randint(1, rows),))
                db.execute("COMMIT")
                logged += 50 * 4096  # one 4 KiB page image per updated row, about
        target = time.time()
        while rds.describe_db_instances(DBInstanceIdentifier="on")["DBInstances"][0]["LatestRestorableTime"].timestamp() < target:
            time.sleep(0.05)
        t = time.monotonic()
        rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="from-snap", DBSnapshotIdentifier="base")
        wait_status(rds, "from-snap")
        snap_restore = time.monotonic() - t
        t = time.monotonic()
        rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="on", TargetDBInstanceIdentifier="pitr",
                                                 RestoreTime=datetime.datetime.fromtimestamp(target, datetime.timezone.utc))
        wait_status(rds, "pitr")
        pitr = time.monotonic() - t
        log_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(server.data_dir, "repo", "log")) for f in fs)

        print(f"base                           {os.path.getsize(path_of(rds, 'from-snap')) / 1048576:10.0f} MiB")
        print(f"change log written             ~{args.log_mib} MiB of page images ({log_bytes / 1048576:.0f} MiB stored, all segments)")
        print(f"restore from snapshot          {snap_restore:10.2f} s")
        print(f"point-in-time restore          {pitr:10.2f} s   ({pitr / snap_restore:.2f}x restore-from-snapshot)")
    except Exception:
        for e in rds.describe_events(SourceType="db-instance", SourceIdentifier="on", Duration=60)["Events"]:
            print(e["Date"], e["Message"])
        for snap in rds.describe_db_snapshots(DBInstanceIdentifier="on")["DBSnapshots"]:
            print(snap["DBSnapshotIdentifier"], snap["Status"], snap.get("SnapshotCreateTime"))
        raise
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
