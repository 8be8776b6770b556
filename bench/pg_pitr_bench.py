#!/usr/bin/python3
"""Point-in-time benchmark for a postgres instance, through the real API:
  - LatestRestorableTime lag (p50, p99) while pgbench runs flat out;
  - pgbench throughput with WAL capture on (retention 1) vs off (retention 0),
    alternated on the same cluster in the same run;
  - point-in-time restore of the pgbench base plus the WAL of the load,
    against restore-from-snapshot of the same base.

  bench/pg_pitr_bench.py --stratad build-release/bin/stratad [--scale 70 --seconds 20]
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import harness  # noqa: E402

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
USER, PASSWORD, DB = "bench", "bench-password", "bench"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


class Bench:
    def __init__(self, rds):
        self.rds = rds

    def inst(self, name):
        return self.rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]

    def wait(self, name, status="available"):
        while self.inst(name)["DBInstanceStatus"] != status:
            time.sleep(0.05)

    def pgbench(self, name, *args):
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        out = subprocess.run([f"{PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(self.inst(name)["Endpoint"]["Port"]),
                              "-U", USER, *args, DB], env=env, capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            if line.startswith("tps ="):
                return float(line.split()[2])
        return None

    def lrt(self, name):
        t = self.inst(name).get("LatestRestorableTime")
        return t.timestamp() if t else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stratad", default="build-release/bin/stratad")
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--seconds", type=int, default=20)
    args = ap.parse_args()
    harness.STRATAD = os.path.abspath(args.stratad)
    tmp = tempfile.mkdtemp(prefix="strata-pgbench-")
    server = harness.Stratad(os.path.join(tmp, "data")).start()
    try:
        import boto3
        kv = dict(line.split(" = ", 1) for line in open(os.path.join(tmp, "data", "credentials")).read().splitlines()
                  if " = " in line)
        rds = boto3.client("rds", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id=kv["aws_access_key_id"], aws_secret_access_key=kv["aws_secret_access_key"])
        b = Bench(rds)
        rds.create_db_instance(DBInstanceIdentifier="pg", DBInstanceClass="db.t3.micro", Engine="postgres",
                               MasterUsername=USER, MasterUserPassword=PASSWORD, DBName=DB)
        b.wait("pg")
        t0 = time.monotonic()
        b.pgbench("pg", "-i", "-q", "-s", str(args.scale))
        print(f"pgbench -i -s {args.scale}: {time.monotonic() - t0:.1f} s")

        # Throughput with capture off vs on, alternated.
        tps = {"off": [], "on": []}
        for mode in ["off", "on", "off", "on"]:
            rds.modify_db_instance(DBInstanceIdentifier="pg", BackupRetentionPeriod=0 if mode == "off" else 1,
                                   ApplyImmediately=True)
            if mode == "on":
                while not b.lrt("pg"):  # capture running and its base snapshot done
                    time.sleep(0.1)
                b.wait("pg")
            tps[mode].append(b.pgbench("pg", "-c", "2", "-j", "2", "-T", str(args.seconds), "-n"))
            print(f"capture {mode}: {tps[mode][-1]:.0f} tps")

        # Lag under load (capture on).
        lags, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                lrt = b.lrt("pg")
                if lrt:
                    lags.append(time.time() - lrt)
                time.sleep(0.1)
        sampler = threading.Thread(target=sample)
        sampler.start()
        b.pgbench("pg", "-c", "2", "-j", "2", "-T", str(args.seconds), "-n")
        stop.set()
        sampler.join()

        # PITR vs restore-from-snapshot: a fresh base, then the WAL of one more load.
        rds.create_db_snapshot(DBInstanceIdentifier="pg", DBSnapshotIdentifier="base")
        while rds.describe_db_snapshots(DBSnapshotIdentifier="base")["DBSnapshots"][0]["Status"] != "available":
            time.sleep(0.05)
        b.wait("pg")
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        port = str(b.inst("pg")["Endpoint"]["Port"])
        lsn = lambda: subprocess.run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", port, "-U", USER, "-Atc",
                                      "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn", DB], env=env,
                                     capture_output=True, text=True).stdout.strip()
        before = int(float(lsn()))
        b.pgbench("pg", "-c", "2", "-j", "2", "-T", str(args.seconds), "-n")
        wal_mib = (int(float(lsn())) - before) / 2**20
        target = time.time()
        while (b.lrt("pg") or 0) < target + 2:
            time.sleep(0.1)
        t0 = time.monotonic()
        rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="snap", DBSnapshotIdentifier="base")
        b.wait("snap")
        t_snap = time.monotonic() - t0
        rds.delete_db_instance(DBInstanceIdentifier="snap", SkipFinalSnapshot=True)
        t0 = time.monotonic()
        rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier="pg", TargetDBInstanceIdentifier="pit",
                                                 RestoreTime=__import__("datetime").datetime.fromtimestamp(
                                                     target, __import__("datetime").timezone.utc))
        b.wait("pit")
        t_pit = time.monotonic() - t0

        on, off = statistics.mean(tps["on"]), statistics.mean(tps["off"])
        print("\n| measure | result |\n|---|---|")
        print(f"| LatestRestorableTime lag under pgbench -c 2 ({len(lags)} samples) | "
              f"p50 {pct(lags, 0.5):.2f} s, p99 {pct(lags, 0.99):.2f} s |")
        print(f"| pgbench tps, capture on / off | {on:.0f} / {off:.0f} = **{on / off:.3f}** "
              f"(runs on {tps['on']}, off {tps['off']}) |")
        print(f"| restore from snapshot (scale {args.scale}) | {t_snap:.1f} s |")
        print(f"| point-in-time restore, same base + {wal_mib:.0f} MiB of WAL | {t_pit:.1f} s "
              f"= {t_pit / t_snap:.2f}x |")
    finally:
        server.stop()
        harness.stop_postgres_servers(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
