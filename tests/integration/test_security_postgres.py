"""Security: a PostgreSQL instance's master user is an RDS-style master user
(a member of rds_superuser, not a superuser) and reaches nothing outside its
own cluster; each instance's server runs as its own OS user; stratad's files
are readable by their owner only. Driven with psql, boto3 and the aws CLI."""
import glob
import grp
import os
import pwd
import re
import stat
import subprocess
import unittest

from harness import StrataTestCase, wait_until

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1] if glob.glob("/usr/lib/postgresql/*/bin") else None
USER, PASSWORD, DB = "appuser", "s3cret-pass", "app"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app"
# PostgreSQL's and the guard module's refusals.
DENIED = re.compile(r"permission denied|must be superuser|must be owner|reserved to Strata|"
                    r"only superusers|not whitelisted|no pg_hba.conf entry|rejects connection", re.I)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@unittest.skipIf(PG_BIN is None, "PostgreSQL server programs are not installed")
class PostgresSecurityTest(StrataTestCase):

    # --- helpers ---

    def create_pg(self, name, wait=True):
        self.rds().create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro",
                                         Engine="postgres", MasterUsername=USER, MasterUserPassword=PASSWORD,
                                         DBName=DB)
        if wait:
            self.wait_available(name)

    def instance(self, name):
        return self.rds().describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]

    def run_psql(self, name, sql, user=USER, password=PASSWORD, db=DB):
        env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
        return subprocess.run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.instance(name)["Endpoint"]["Port"]),
                               "-U", user, "-d", db, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
                              env=env, capture_output=True, text=True, timeout=120)

    def psql(self, name, sql, **kw):
        p = self.run_psql(name, sql, **kw)
        self.assertEqual(p.returncode, 0, f"psql {sql!r} on {name} failed: {p.stderr}")
        return p.stdout.strip()

    def refused(self, name, sql, **kw):
        p = self.run_psql(name, sql, **kw)
        self.assertNotEqual(p.returncode, 0, f"{sql!r} succeeded: {p.stdout}")
        self.assertRegex(p.stderr, DENIED, sql)
        return p.stderr

    def instance_dir(self, name):
        return os.path.join(self.data_dir, "instances", self.instance(name)["DbiResourceId"])

    def postmaster_pid(self, name):
        with open(os.path.join(self.instance_dir(name), "pgdata", "postmaster.pid")) as f:
            return int(f.readline())

    def server_os_user(self, name):
        return subprocess.run(["ps", "-o", "user:64=", "-p", str(self.postmaster_pid(name))], capture_output=True,
                              text=True, check=True).stdout.strip()

    def as_os_user(self, user, command):
        return subprocess.run(["su", "-s", "/bin/sh", user, "-c", command], capture_output=True, text=True,
                              timeout=30)

    # --- tests ---

    def test_master_user_cannot_reach_the_host_or_become_superuser(self):
        self.create_pg("sec")
        self.assertEqual(self.psql("sec", "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"), "f")
        self.assertEqual(self.psql("sec", "SELECT pg_has_role('rds_superuser', 'member')"), "t")
        self.psql("sec", "CREATE TABLE t (line text)")
        for sql in [
            "COPY t FROM PROGRAM 'id'",
            "COPY t TO '/tmp/strata-security-copy'",
            "COPY t FROM '/etc/passwd'",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT pg_read_binary_file('global/pg_control')",
            "SELECT pg_ls_dir('.')",
            "SELECT lo_import('/etc/passwd')",
            "ALTER SYSTEM SET work_mem = '1MB'",
            "SELECT pg_reload_conf()",
            "SET ROLE rdsadmin",
            "SET SESSION AUTHORIZATION rdsadmin",
            "ALTER ROLE appuser SUPERUSER",
            "ALTER ROLE appuser REPLICATION",
            "CREATE ROLE sneaky SUPERUSER",
            "ALTER ROLE rdsadmin PASSWORD 'taken-over-1'",
            # CREATEROLE may grant any role that is not a superuser in
            # PostgreSQL 15: the guard module refuses these three.
            "GRANT pg_execute_server_program TO appuser",
            "GRANT pg_read_server_files TO appuser",
            "GRANT pg_write_server_files TO appuser",
            "CREATE ROLE sneaky IN ROLE pg_execute_server_program",
            "ALTER GROUP pg_read_server_files ADD USER appuser",
            # Extensions that reach the server's files, and untrusted code.
            "CREATE EXTENSION file_fdw",
            "CREATE EXTENSION adminpack",
            "CREATE FUNCTION sneaky() RETURNS int AS 'libc.so.6', 'getpid' LANGUAGE c",
        ]:
            with self.subTest(sql=sql):
                self.refused("sec", sql)
        self.assertFalse(os.path.exists("/tmp/strata-security-copy"))
        self.assertEqual(self.psql("sec", "SELECT count(*) FROM t"), "0")
        self.assertEqual(self.psql("sec", "SELECT rolsuper FROM pg_roles WHERE rolname = 'appuser'"), "f")
        self.assertEqual(self.psql("sec", "SELECT pg_has_role('appuser', 'pg_execute_server_program', 'member')"),
                         "f")

        # Strata's superuser cannot be logged into over TCP, whatever the password.
        for db in (DB, "postgres"):
            self.refused("sec", "SELECT 1", user="rdsadmin", password="anything", db=db)

        # The Data API runs as the master user, with no more rights.
        arn = self.instance("sec")["DBInstanceArn"]
        data = self.client("rds-data")
        res = data.execute_statement(resourceArn=arn, secretArn=SECRET, database=DB,
                                     sql="SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user")
        self.assertEqual(res["records"], [[{"stringValue": USER}, {"booleanValue": False}]])
        for sql in ["COPY t FROM PROGRAM 'id'", "SELECT pg_read_file('/etc/passwd')"]:
            with self.subTest(data_api=sql):
                with self.assertRaises(data.exceptions.BadRequestException):
                    data.execute_statement(resourceArn=arn, secretArn=SECRET, database=DB, sql=sql)

    def test_master_user_keeps_rds_master_rights(self):
        self.create_pg("sec")
        self.psql("sec", "CREATE DATABASE second")
        self.assertEqual(self.psql("sec", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'"),
                         USER)
        self.psql("sec", "CREATE TABLE mine (id int PRIMARY KEY, v text); INSERT INTO mine VALUES (1, 'a')")
        # Roles it makes, and their tables, are within its reach.
        self.psql("sec", "CREATE ROLE worker LOGIN PASSWORD 'worker-pass-1'; "
                         "GRANT CREATE ON SCHEMA public TO worker")
        self.psql("sec", "CREATE TABLE theirs (id int); INSERT INTO theirs VALUES (7)", user="worker",
                  password="worker-pass-1")
        self.assertEqual(self.psql("sec", "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'theirs'"),
                         "worker")
        self.assertEqual(self.psql("sec", "INSERT INTO theirs VALUES (8); UPDATE theirs SET id = id + 1; "
                                          "SELECT string_agg(id::text, ',' ORDER BY id) FROM theirs"), "8,9")
        self.psql("sec", "DELETE FROM theirs WHERE id = 9")
        # It hands rights on (as RDS's master user does) and sees the server's activity.
        self.psql("sec", "GRANT rds_superuser TO worker")
        self.psql("sec", "GRANT pg_read_all_data TO worker")
        self.psql("sec", "CREATE ROLE helper NOLOGIN; ALTER ROLE helper CREATEDB; DROP ROLE helper")
        self.assertEqual(self.psql("sec", "SELECT count(*) > 0 FROM pg_stat_activity WHERE query IS NOT NULL "
                                          "AND usename = current_user"), "t")
        self.psql("sec", "CHECKPOINT")
        # Trusted extensions, and the ones RDS lets its master user add.
        self.psql("sec", "CREATE EXTENSION pgcrypto; SELECT digest('x', 'sha256') IS NOT NULL")
        self.psql("sec", "CREATE EXTENSION pg_stat_statements")
        self.psql("sec", "CREATE EXTENSION amcheck; SELECT bt_index_check('mine_pkey')")
        self.psql("sec", "CREATE TABLE other_db (x int)", db="second")

    def test_snapshot_restore_keeps_the_model_and_the_password_change_works(self):
        self.create_pg("sec")
        self.psql("sec", "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before the snapshot')")
        rds = self.rds()
        # The first automated snapshot (as Strata's superuser) comes first.
        wait_until(lambda: self.instance("sec").get("LatestRestorableTime"), timeout=120, what="a restorable time")
        self.wait_available("sec")
        rds.create_db_snapshot(DBInstanceIdentifier="sec", DBSnapshotIdentifier="sec-snap")
        wait_until(lambda: rds.describe_db_snapshots(DBSnapshotIdentifier="sec-snap")["DBSnapshots"][0]["Status"]
                   == "available", timeout=180, what="the snapshot")
        rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="sec-restored", DBSnapshotIdentifier="sec-snap",
                                                 DBInstanceClass="db.t3.micro")
        self.wait_available("sec-restored")
        self.assertEqual(self.psql("sec-restored", "SELECT v FROM kept"), "before the snapshot")
        self.assertEqual(self.psql("sec-restored", "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"), "f")
        self.refused("sec-restored", "COPY kept FROM PROGRAM 'id'")
        self.refused("sec-restored", "GRANT pg_execute_server_program TO appuser")
        self.refused("sec-restored", "SELECT 1", user="rdsadmin", password="anything")
        self.psql("sec-restored", "INSERT INTO kept VALUES ('after the restore')")
        if os.geteuid() == 0:
            self.assertNotEqual(self.server_os_user("sec"), self.server_os_user("sec-restored"))
        # ModifyDBInstance's MasterUserPassword still reaches the (non-superuser) master user.
        rds.modify_db_instance(DBInstanceIdentifier="sec-restored", MasterUserPassword="changed-pass-2",
                               ApplyImmediately=True)
        wait_until(lambda: self.run_psql("sec-restored", "SELECT 1", password="changed-pass-2").returncode == 0,
                   timeout=60, what="the new password")
        self.assertNotEqual(self.run_psql("sec-restored", "SELECT 1").returncode, 0, "the old password still works")

    @unittest.skipUnless(os.geteuid() == 0, "needs root: stratad makes one OS user per instance only as root")
    def test_each_instance_runs_as_its_own_os_user(self):
        self.create_pg("one", wait=False)
        self.create_pg("two", wait=False)
        self.rds().create_db_instance(DBInstanceIdentifier="lite", DBInstanceClass="db.t3.micro",
                                         Engine="sqlite")
        self.wait_available("one", "two", "lite")
        user_one, user_two = self.server_os_user("one"), self.server_os_user("two")
        self.assertTrue(user_one.startswith("strata-pg-"), user_one)
        self.assertTrue(user_two.startswith("strata-pg-"), user_two)
        self.assertNotEqual(user_one, user_two)
        for name, user in (("one", user_one), ("two", user_two)):
            info = pwd.getpwnam(user)
            self.assertEqual(info.pw_shell, "/usr/sbin/nologin")
            cluster = os.path.join(self.instance_dir(name), "pgdata")
            self.assertEqual(os.stat(cluster).st_uid, info.pw_uid, name)
            self.assertEqual(mode(cluster), 0o700, name)
            self.assertEqual(os.stat(self.instance_dir(name)).st_uid, info.pw_uid, name)
            self.assertEqual(mode(self.instance_dir(name)), 0o700, name)

        # The OS user of one reads its own cluster, and nothing of the other's,
        # the SQLite instance's, or stratad's.
        own = os.path.join(self.instance_dir("one"), "pgdata", "PG_VERSION")
        self.assertEqual(self.as_os_user(user_one, f"cat {own}").returncode, 0, "the check itself is broken")
        sqlite_file = self.instance("lite")["Endpoint"]["Address"]
        for victim in [os.path.join(self.instance_dir("two"), "pgdata", "PG_VERSION"),
                       os.path.join(self.instance_dir("two"), "pgdata", "global", "pg_control"),
                       os.path.join(self.data_dir, "catalog.db"), os.path.join(self.data_dir, "credentials"),
                       sqlite_file]:
            with self.subTest(victim=victim):
                p = self.as_os_user(user_one, f"cat {victim} > /dev/null")
                self.assertNotEqual(p.returncode, 0, f"{user_one} read {victim}")
                self.assertIn("Permission denied", p.stderr)
        p = self.as_os_user(user_one, f"ls {os.path.join(self.data_dir, 'instances')}")
        self.assertNotEqual(p.returncode, 0, "the instances can be listed by a server's user")

        # Deleting an instance removes its OS user.
        self.rds().delete_db_instance(DBInstanceIdentifier="two", SkipFinalSnapshot=True)

        def user_gone():
            try:
                pwd.getpwnam(user_two)
                return False
            except KeyError:
                return True
        wait_until(user_gone, timeout=60, what=f"{user_two} removed")
        pwd.getpwnam(user_one)

    def test_files_are_readable_by_their_owner_only(self):
        self.create_pg("sec")
        self.rds().create_db_instance(DBInstanceIdentifier="lite", DBInstanceClass="db.t3.micro",
                                         Engine="sqlite")
        self.wait_available("lite")
        sqlite_file = self.instance("lite")["Endpoint"]["Address"]
        self.client("rds-data").execute_statement(resourceArn=self.instance("lite")["DBInstanceArn"],
                                                  secretArn=SECRET, sql="CREATE TABLE t (x)")

        def check():
            data_dir_mode = mode(self.data_dir)
            # 0700; 0710 while PostgreSQL servers of their own OS users (in
            # the group strata-pg, nobody else) must pass through it.
            self.assertIn(data_dir_mode, (0o700, 0o710), oct(data_dir_mode))
            if data_dir_mode == 0o710:
                self.assertEqual(grp.getgrgid(os.stat(self.data_dir).st_gid).gr_name, "strata-pg")
            for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm", "credentials"]:
                path = os.path.join(self.data_dir, f)
                if f.startswith("catalog.db-") and not os.path.exists(path):
                    continue
                with self.subTest(file=f):
                    self.assertEqual(mode(path), 0o600, f)
            for path in glob.glob(sqlite_file + "*"):
                with self.subTest(file=path):
                    self.assertEqual(mode(path), 0o600, path)
            self.assertEqual(mode(os.path.dirname(sqlite_file)), 0o700)
            self.assertEqual(mode(os.path.join(self.data_dir, "repo")), 0o700)
            self.assertEqual(mode(os.path.join(self.data_dir, "instances")) & 0o067, 0)
            self.assertEqual(mode(os.path.join(self.instance_dir("sec"), "pgdata")), 0o700)
        check()

        # Files an older build left readable (umask 022) are tightened when stratad starts.
        self.server.stop()
        for f in ["catalog.db", "credentials"]:
            os.chmod(os.path.join(self.data_dir, f), 0o644)
        os.chmod(sqlite_file, 0o644)
        os.chmod(os.path.dirname(sqlite_file), 0o755)
        os.chmod(os.path.join(self.data_dir, "instances"), 0o755)
        os.chmod(self.data_dir, 0o755)
        self.server.start()
        self.wait_available("sec", "lite")
        check()


if __name__ == "__main__":
    unittest.main()
