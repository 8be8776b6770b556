#!/usr/bin/python3
"""The repository on S3 (issue 7): snapshot and restore of a --size-mib SQLite
database to and from an S3 endpoint, against `aws s3 cp` of the same file to
the same endpoint in the same run, and the number of objects a snapshot
writes. Needs S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (e.g.
`../shared/tools/ceph-s3 start DIR && source DIR/s3.env`).

  bench/s3_bench.py --stratad build-release/bin/stratad [--size-mib 1024]
"""
import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import benchlib  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stratad", default="build-release/bin/stratad")
    ap.add_argument("--size-mib", type=int, default=1024)
    args = ap.parse_args()
    endpoint = os.environ["S3_ENDPOINT"]
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket, prefix = "strata-bench", "run-%d" % int(time.time())
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    server, _, rds, tmp = benchlib.start_server(
        args.stratad, ["--repo", f"s3://{bucket}/{prefix}", "--s3-endpoint", endpoint, "--s3-path-style"])
    try:
        rds.create_db_instance(DBInstanceIdentifier="bench", DBInstanceClass="db.t3.micro", Engine="sqlite",
                               BackupRetentionPeriod=0)
        while rds.describe_db_instances(DBInstanceIdentifier="bench")["DBInstances"][0]["DBInstanceStatus"] != "available":
            time.sleep(0.05)
        path = rds.describe_db_instances(DBInstanceIdentifier="bench")["DBInstances"][0]["Endpoint"]["Address"]
        benchlib.fill(path, args.size_mib)
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = os.path.getsize(path)
        env = dict(os.environ, AWS_CONFIG_FILE="/dev/null", AWS_PAGER="")
        t = time.monotonic()
        subprocess.run(["/usr/bin/aws", "--endpoint-url", endpoint, "s3", "cp", "--quiet", path,
                        f"s3://{bucket}/{prefix}-cp/data.db"], env=env, check=True)
        cp_up = time.monotonic() - t
        t = time.monotonic()
        subprocess.run(["/usr/bin/aws", "--endpoint-url", endpoint, "s3", "cp", "--quiet",
                        f"s3://{bucket}/{prefix}-cp/data.db", os.path.join(tmp, "down.db")], env=env, check=True)
        cp_down = time.monotonic() - t

        before = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])}
        t = time.monotonic()
        rds.create_db_snapshot(DBInstanceIdentifier="bench", DBSnapshotIdentifier="full")
        while rds.describe_db_snapshots(DBSnapshotIdentifier="full")["DBSnapshots"][0]["Status"] == "creating":
            time.sleep(0.05)
        snap = time.monotonic() - t
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
        new = [o for o in listed if o["Key"] not in before]
        t = time.monotonic()
        rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="copy", DBSnapshotIdentifier="full")
        while rds.describe_db_instances(DBInstanceIdentifier="copy")["DBInstances"][0]["DBInstanceStatus"] != "available":
            time.sleep(0.05)
        restore = time.monotonic() - t
        mib = size / 1048576
        print(f"database file                      {mib:8.0f} MiB")
        print(f"aws s3 cp up / down                {cp_up:8.2f} s / {cp_down:.2f} s")
        print(f"create-db-snapshot -> available    {snap:8.2f} s   ({cp_up / snap:.2f}x aws s3 cp)")
        print(f"restore -> available               {restore:8.2f} s   ({cp_down / restore:.2f}x aws s3 cp)")
        print(f"objects the snapshot wrote         {len(new):8d}   ({sum(o['Size'] for o in new) / 1048576:.0f} MiB)")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
