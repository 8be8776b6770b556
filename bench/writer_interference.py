#!/usr/bin/python3
"""What slows a committing SQLite writer (autocommit INSERTs, WAL mode, as in
snapshot_bench.py) when something runs beside it: a held read transaction
(what a snapshot holds), the same with the WAL zero-extended first, direct
and buffered disk writes, and idle-priority CPU hogs in the writer's session
and in another one (autogroups). No Strata involved: it measures the machine.

  bench/writer_interference.py [--seconds 5] [--rounds 2] [--dir DIR]
"""
import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default=None, help="on the disk to measure (default: a temp dir)")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="strata-interference-", dir=args.dir)
    path = os.path.join(d, "data.db")
    scratch = os.path.join(d, "dd.out")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT)")

    def extend_wal(mib):
        # Under the write lock, so no commit writes where the zeros go;
        # SQLite ignores bytes past the last valid frame.
        e = sqlite3.connect(path, isolation_level=None)
        e.execute("BEGIN IMMEDIATE")
        wal = path + "-wal"
        size = os.path.getsize(wal)
        fd = os.open(wal, os.O_WRONLY)
        for off in range(size, size + (mib << 20), 1 << 20):
            os.pwrite(fd, b"\0" * (1 << 20), off)
        os.fsync(fd)
        os.close(fd)
        e.execute("COMMIT")
        e.close()

    def run(label, side_cmd=None, new_session=False, hold=False, extend=False):
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for _ in range(10):
            db.execute("INSERT INTO w (v) VALUES ('x')")
        reader = None
        if hold:
            reader = sqlite3.connect(path, isolation_level=None)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchall()
        if extend:
            extend_wal(256)
        side = None
        if side_cmd:
            side = subprocess.Popen(side_cmd, shell=True, start_new_session=True if new_session else False,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)  # the side load's start-up is not measured; both run regardless
        lat = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            db.execute("INSERT INTO w (v) VALUES (?)", ("x" * 200,))
            lat.append(time.perf_counter() - t)
        if side:
            subprocess.run(["pkill", "-9", "-f", "strata-interference-side"], check=False)
            side.kill()
            side.wait()
        if reader:
            reader.execute("COMMIT")
            reader.close()
        print(f"{label:52s} n={len(lat):6d} p50={statistics.median(lat) * 1e3:7.3f} "
              f"p99={percentile(lat, 0.99) * 1e3:7.3f} ms", flush=True)

    tag = "strata-interference-side"
    dd = f"while true; do dd if=/dev/zero of={scratch} bs={{bs}} count={{n}} {{flags}} conv=fsync; done # {tag}"
    hog = f"chrt -i 0 sh -c 'yes {tag} > /dev/null & yes {tag} > /dev/null & wait'"
    try:
        for _ in range(args.rounds):
            run("alone")
            run("read transaction held", hold=True)
            run("read transaction held, WAL zero-extended 256 MiB", hold=True, extend=True)
            run("dd oflag=direct bs=1M", dd.format(bs="1M", n=512, flags="oflag=direct"))
            run("dd oflag=direct bs=1M, ionice -c3",
                "ionice -c3 sh -c \"" + dd.format(bs="1M", n=512, flags="oflag=direct") + "\"")
            run("dd oflag=direct bs=256K", dd.format(bs="256K", n=2048, flags="oflag=direct"))
            run("dd buffered bs=1M", dd.format(bs="1M", n=512, flags=""))
            run("2 SCHED_IDLE busy loops, same session", hog)
            run("2 SCHED_IDLE busy loops, another session", hog, new_session=True)
    finally:
        db.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
