#!/usr/bin/python3
"""stratad's memory under a bulk load (issue 20, item 12); by hand, not in CI.

For each mode (capture on: BackupRetentionPeriod 1; off: 0, the baseline) it
starts a fresh stratad, creates a SQLite instance, bulk-loads --gib GiB
directly into the instance's file with python's sqlite3 at full speed
(--txn-mib per transaction; GiB of row data inserted, the file ends a
little larger), samples stratad's VmRSS/VmHWM every 100 ms, and
prints the peak and the RSS once the burst is over (capture caught up, then
--settle seconds). With capture on it then restores to LatestRestorableTime
and checks the restored row count.

  bench/capture_memory_bench.py --stratad build/bin/stratad --gib 1
  bench/capture_memory_bench.py --stratad build/bin/stratad --gib 4 --modes on
"""
import argparse
import datetime
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import harness  # noqa: E402

ROW_BYTES = 1000 + 1595  # what a row inserts: 1000 random bytes and 1595 of text


def status_kib(pid):
    """VmRSS and VmHWM of pid, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


class Sampler(threading.Thread):
    """Samples a process's VmRSS every 100 ms until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.hwm_kib, self.last_kib = pid, 0, 0, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                rss, hwm = status_kib(self.pid)
            except OSError:
                return
            self.last_kib, self.hwm_kib = rss, hwm
            self.peak_kib = max(self.peak_kib, rss)
            self.done.wait(0.1)


def describe(rds, name):
    return rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]


def wait_for(pred, timeout, what):
    return harness.wait_until(pred, timeout=timeout, what=what)


def bulk_load(path, gib, txn_mib):
    """Inserts gib GiB of rows in transactions of txn_mib MiB; returns the row count."""
    rows = int(gib * (1 << 30)) // ROW_BYTES
    per_txn = max(1, txn_mib * (1 << 20) // ROW_BYTES)
    text = "customer %d order %d "
    db = sqlite3.connect(path, timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, txt TEXT, blob BLOB)")
    db.commit()
    for start in range(0, rows, per_txn):
        n = min(per_txn, rows - start)
        db.executemany("INSERT INTO t (txt, blob) VALUES (?, randomblob(1000))",
                       [((text % (i, i * 7)) * 55,) for i in range(start, start + n)])
        db.commit()
    db.close()
    return rows


def run_mode(stratad, mode, gib, txn_mib, settle, restore):
    tmp = tempfile.mkdtemp(prefix="strata-membench-", dir=os.environ.get("TMPDIR", "/work/tmp"))
    harness.STRATAD = os.path.abspath(stratad)
    server = harness.Stratad(os.path.join(tmp, "data")).start()
    result = {"mode": mode}
    try:
        case = harness.StrataTestCase()
        case.server, case.data_dir, case.tmp = server, server.data_dir, tmp
        rds = case.client()
        rds.create_db_instance(DBInstanceIdentifier="load", DBInstanceClass="db.t3.micro", Engine="sqlite",
                               BackupRetentionPeriod=1 if mode == "on" else 0)
        wait_for(lambda: describe(rds, "load")["DBInstanceStatus"] == "available", 120, "available")
        if mode == "on":
            wait_for(lambda: "LatestRestorableTime" in describe(rds, "load"), 120, "a restorable time")
        path = describe(rds, "load")["Endpoint"]["Address"]
        pid = server.proc.pid
        result["start_mib"] = status_kib(pid)[0] / 1024
        sampler = Sampler(pid)
        sampler.start()
        t0 = time.monotonic()
        rows = bulk_load(path, gib, txn_mib)
        result["load_s"] = time.monotonic() - t0
        result["file_gib"] = os.path.getsize(path) / (1 << 30)
        loaded_at = datetime.datetime.now(datetime.timezone.utc)
        if mode == "on":
            # The burst is over once the capture has everything committed.
            wait_for(lambda: describe(rds, "load").get("LatestRestorableTime", loaded_at) > loaded_at,
                     1800, "the capture to catch up")
            result["catch_up_s"] = time.monotonic() - t0 - result["load_s"]
        time.sleep(settle)  # a time to watch RSS over, not a synchronisation
        sampler.done.set()
        sampler.join()
        result["peak_mib"] = sampler.peak_kib / 1024
        result["hwm_mib"] = sampler.hwm_kib / 1024
        result["after_mib"] = sampler.last_kib / 1024
        result["rows"] = rows
        if mode == "on" and restore:
            t1 = time.monotonic()
            rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="load",
                                                     TargetDBInstanceIdentifier="copy",
                                                     UseLatestRestorableTime=True)
            wait_for(lambda: describe(rds, "copy")["DBInstanceStatus"] in ("available", "failed"), 3600,
                     "the restore")
            result["restore_s"] = time.monotonic() - t1
            copy = sqlite3.connect(describe(rds, "copy")["Endpoint"]["Address"])
            result["restored_rows"] = copy.execute("SELECT count(*) FROM t").fetchone()[0]
            copy.close()
            result["restore_hwm_mib"] = status_kib(pid)[1] / 1024
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stratad", default="build/bin/stratad")
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--txn-mib", type=int, default=8, help="bytes inserted per transaction")
    ap.add_argument("--modes", default="on,off", help="on (retention 1), off (retention 0)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds watched after the burst")
    ap.add_argument("--no-restore", action="store_true")
    args = ap.parse_args()
    os.makedirs(os.environ.get("TMPDIR", "/work/tmp"), exist_ok=True)
    ok = True
    for mode in args.modes.split(","):
        r = run_mode(args.stratad, mode, args.gib, args.txn_mib, args.settle, not args.no_restore)
        line = (f"capture {mode:3}: {r['rows']} rows, {r['file_gib']:.2f} GiB file, loaded in {r['load_s']:.1f} s, RSS at start {r['start_mib']:.0f} MiB, "
                f"peak {r['peak_mib']:.0f} MiB (VmHWM {r['hwm_mib']:.0f}), after the burst {r['after_mib']:.0f} MiB")
        if "catch_up_s" in r:
            line += f", caught up {r['catch_up_s']:.1f} s after the load"
        if "restored_rows" in r:
            exact = r["restored_rows"] == r["rows"]
            ok = ok and exact
            line += (f"; PITR to LatestRestorableTime in {r['restore_s']:.1f} s: {r['restored_rows']} of "
                     f"{r['rows']} rows ({'exact' if exact else 'WRONG'}), VmHWM then {r['restore_hwm_mib']:.0f} MiB")
        print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
