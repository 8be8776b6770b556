"""SQLite instances through the RDS Query API, with the real aws CLI and boto3."""
import os
import sqlite3
import unittest

from harness import StrataTestCase, wait_until


class InstanceLifecycle(StrataTestCase):
    def test_create_describe_modify_delete_with_the_aws_cli(self):
        created = self.aws("rds", "create-db-instance", "--db-instance-identifier", "App",
                           "--db-instance-class", "db.t3.micro", "--engine", "sqlite",
                           "--allocated-storage", "20", "--db-name", "appdb",
                           "--tags", "Key=team,Value=payments")["DBInstance"]
        self.assertEqual(created["DBInstanceIdentifier"], "app")  # stored lower-case
        self.assertEqual(created["DBInstanceStatus"], "creating")
        self.assertEqual(created["BackupRetentionPeriod"], 1)
        self.assertRegex(created["DbiResourceId"], r"^db-[A-Z0-9]{26}$")
        self.assertRegex(created["DBInstanceArn"], r"^arn:aws:rds:us-east-1:\d{12}:db:app$")
        self.assertRegex(created["PreferredBackupWindow"], r"^\d\d:\d\d-\d\d:\d\d$")
        self.assertEqual(created["TagList"], [{"Key": "team", "Value": "payments"}])
        self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", "app")

        inst = self.aws("rds", "describe-db-instances", "--db-instance-identifier", "app")["DBInstances"][0]
        self.assertEqual(inst["DBInstanceStatus"], "available")
        self.assertEqual(inst["Engine"], "sqlite")
        self.assertEqual(inst["EngineVersion"], sqlite3.sqlite_version)
        self.assertEqual(inst["DBName"], "appdb")
        self.assertEqual(inst["AllocatedStorage"], 20)
        path = inst["Endpoint"]["Address"]
        self.assertTrue(os.path.isabs(path) and os.path.exists(path), path)
        self.assertIn("InstanceCreateTime", inst)

        mod = self.aws("rds", "modify-db-instance", "--db-instance-identifier", "app",
                       "--backup-retention-period", "7", "--preferred-backup-window", "04:00-04:30",
                       "--deletion-protection", "--apply-immediately")["DBInstance"]
        self.assertEqual(mod["BackupRetentionPeriod"], 7)
        self.assertEqual(mod["PreferredBackupWindow"], "04:00-04:30")
        self.assertTrue(mod["DeletionProtection"])

        self.assertEqual(self.aws_error("rds", "delete-db-instance", "--db-instance-identifier", "app",
                                        "--skip-final-snapshot"), "InvalidParameterCombination")
        self.aws("rds", "modify-db-instance", "--db-instance-identifier", "app",
                 "--no-deletion-protection")
        self.assertEqual(self.aws_error("rds", "delete-db-instance", "--db-instance-identifier", "app"),
                         "InvalidParameterCombination")
        deleting = self.aws("rds", "delete-db-instance", "--db-instance-identifier", "app",
                            "--skip-final-snapshot")["DBInstance"]
        self.assertEqual(deleting["DBInstanceStatus"], "deleting")
        self.aws("rds", "wait", "db-instance-deleted", "--db-instance-identifier", "app")
        self.assertEqual(self.aws_error("rds", "describe-db-instances", "--db-instance-identifier", "app"),
                         "DBInstanceNotFound")
        self.assertFalse(os.path.exists(path))

    def test_retention_toggle_waits_for_the_maintenance_window_unless_applied_now(self):
        self.create_instance("pend")
        mod = self.aws("rds", "modify-db-instance", "--db-instance-identifier", "pend",
                       "--backup-retention-period", "0")["DBInstance"]
        self.assertEqual(mod["BackupRetentionPeriod"], 1)
        self.assertEqual(mod["PendingModifiedValues"], {"BackupRetentionPeriod": 0})
        mod = self.aws("rds", "modify-db-instance", "--db-instance-identifier", "pend",
                       "--backup-retention-period", "0", "--apply-immediately")["DBInstance"]
        self.assertEqual(mod["BackupRetentionPeriod"], 0)
        self.assertEqual(mod.get("PendingModifiedValues", {}), {})

    def test_errors_have_the_models_codes(self):
        self.create_instance("dup")
        base = ["rds", "create-db-instance", "--db-instance-class", "db.t3.micro", "--engine", "sqlite",
                "--db-instance-identifier"]
        self.assertEqual(self.aws_error(*base, "dup"), "DBInstanceAlreadyExists")
        self.assertEqual(self.aws_error(*base, "DUP"), "DBInstanceAlreadyExists")
        for bad in ["1abc", "a--b", "abc-", "x" * 64, "under_score"]:
            self.assertEqual(self.aws_error(*base, bad), "InvalidParameterValue", bad)
        self.assertEqual(self.aws_error(*base, "ok", "--backup-retention-period", "36"),
                         "InvalidParameterValue")
        self.assertEqual(self.aws_error(*base, "ok", "--preferred-backup-window", "03:00-03:15"),
                         "InvalidParameterValue")
        self.assertEqual(self.aws_error(*base, "ok", "--preferred-backup-window", "05:00-05:30",
                                        "--preferred-maintenance-window", "mon:05:00-mon:05:30"),
                         "InvalidParameterValue")
        self.assertEqual(self.aws_error("rds", "create-db-instance", "--db-instance-identifier", "ok",
                                        "--db-instance-class", "db.t3.micro", "--engine", "oracle-se2"),
                         "InvalidParameterValue")
        self.assertEqual(self.aws_error(*base, "ok", "--tags", "Key=aws:x,Value=1"), "InvalidParameterValue")
        self.assertEqual(self.aws_error("rds", "modify-db-instance", "--db-instance-identifier", "nope",
                                        "--backup-retention-period", "3"), "DBInstanceNotFound")
        self.assertEqual(self.aws_error("rds", "modify-db-instance", "--db-instance-identifier", "dup",
                                        "--preferred-backup-window", "bad"), "InvalidParameterValue")
        # A sqlite instance has no master password to change.
        self.assertEqual(self.aws_error("rds", "modify-db-instance", "--db-instance-identifier", "dup",
                                        "--master-user-password", "long-enough-1"), "InvalidParameterCombination")
        self.assertEqual(self.aws_error("rds", "delete-db-instance", "--db-instance-identifier", "dup",
                                        "--skip-final-snapshot", "--final-db-snapshot-identifier", "x"),
                         "InvalidParameterCombination")
        names = [i["DBInstanceIdentifier"] for i in self.aws("rds", "describe-db-instances")["DBInstances"]]
        self.assertEqual(names, ["dup"], "no failed request left anything behind")

    def test_tags_on_instances(self):
        arn = self.create_instance("tagged", "--tags", "Key=a,Value=1")["DBInstanceArn"]
        self.aws("rds", "add-tags-to-resource", "--resource-name", arn,
                 "--tags", "Key=b,Value=2", "Key=a,Value=3")
        tags = self.aws("rds", "list-tags-for-resource", "--resource-name", arn)["TagList"]
        self.assertEqual(sorted((t["Key"], t["Value"]) for t in tags), [("a", "3"), ("b", "2")])
        self.aws("rds", "remove-tags-from-resource", "--resource-name", arn, "--tag-keys", "a")
        tags = self.aws("rds", "list-tags-for-resource", "--resource-name", arn)["TagList"]
        self.assertEqual(tags, [{"Key": "b", "Value": "2"}])
        missing = arn.replace(":db:tagged", ":db:missing")
        self.assertEqual(self.aws_error("rds", "list-tags-for-resource", "--resource-name", missing),
                         "DBInstanceNotFound")
        self.assertEqual(self.aws_error("rds", "add-tags-to-resource", "--resource-name", "garbage",
                                        "--tags", "Key=a,Value=1"), "InvalidParameterValue")

    def test_filters_and_pagination_with_boto3(self):
        rds = self.client()
        for i in range(23):
            rds.create_db_instance(DBInstanceIdentifier=f"db{i:02}", DBInstanceClass="db.t3.micro",
                                   Engine="sqlite")
        page = rds.describe_db_instances(MaxRecords=20)
        self.assertEqual(len(page["DBInstances"]), 20)
        self.assertIn("Marker", page)
        # A deletion between pages must not make the next page skip or repeat.
        rds.delete_db_instance(DBInstanceIdentifier="db00", SkipFinalSnapshot=True)
        rest = rds.describe_db_instances(MaxRecords=20, Marker=page["Marker"])
        self.assertEqual([i["DBInstanceIdentifier"] for i in rest["DBInstances"]], ["db20", "db21", "db22"])
        self.assertNotIn("Marker", rest)
        all_ids = [i["DBInstanceIdentifier"]
                   for p in rds.get_paginator("describe_db_instances").paginate(PaginationConfig={"PageSize": 20})
                   for i in p["DBInstances"]]
        self.assertEqual(len(all_ids), len(set(all_ids)))
        got = rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["db05", "db07"]}])
        self.assertEqual([i["DBInstanceIdentifier"] for i in got["DBInstances"]], ["db05", "db07"])
        got = rds.describe_db_instances(Filters=[{"Name": "engine", "Values": ["postgres"]}])
        self.assertEqual(got["DBInstances"], [])
        with self.assertRaises(rds.exceptions.ClientError) as e:
            rds.describe_db_instances(MaxRecords=5)
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterValue")
        with self.assertRaises(rds.exceptions.DBInstanceNotFoundFault):
            rds.describe_db_instances(DBInstanceIdentifier="absent")

    def test_events_record_the_lifecycle(self):
        self.create_instance("ev")
        events = self.aws("rds", "describe-events", "--source-type", "db-instance",
                          "--source-identifier", "ev")["Events"]
        self.assertIn("DB instance created", [e["Message"] for e in events])
        self.assertEqual(self.aws_error("rds", "describe-events", "--source-type", "nonsense"),
                         "InvalidParameterValue")

    def test_state_survives_a_restart(self):
        self.create_instance("durable", "--tags", "Key=k,Value=v", "--backup-retention-period", "5")
        before = self.aws("rds", "describe-db-instances")["DBInstances"]
        self.restart()
        after = self.aws("rds", "describe-db-instances")["DBInstances"]
        for inst in before + after:
            inst.pop("LatestRestorableTime", None)  # it moves with the present, as it should
        self.assertEqual(before, after)

    def test_sqlite_data_through_the_file_and_strata_sql(self):
        inst = self.create_instance("data")
        path = self.strata("instance", "path", "data").stdout.strip()
        self.assertEqual(path, inst["Endpoint"]["Address"])
        with sqlite3.connect(path) as db:  # an application on the host opens the file
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
            db.execute("INSERT INTO items (name) VALUES ('from-file')")
        self.strata("sql", "data", "-c", "INSERT INTO items (name) VALUES ('from-cli')")
        out = self.strata("sql", "data", "-c", "SELECT id, name FROM items ORDER BY id").stdout
        self.assertIn("from-file", out)
        self.assertIn("from-cli", out)
        self.assertIn("(2 rows)", out)
        err = self.strata("sql", "data", "-c", "SELECT * FROM missing_table", expect_rc=1)
        self.assertIn("no such table", err.stderr)
        shell = self.strata("sql", "data", stdin="BEGIN;\nINSERT INTO items (name) VALUES ('rolled');\n"
                                                   "ROLLBACK;\nSELECT count(*) AS n FROM items;\n")
        self.assertIn("2", shell.stdout.splitlines()[-2])
        status = self.strata("status").stdout
        self.assertIn("healthy", status)
        self.assertIn("data", status)
        with sqlite3.connect(path) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM items").fetchone()[0], 2)


if __name__ == "__main__":
    unittest.main()
