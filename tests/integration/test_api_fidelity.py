"""Issue 21: what careful clients noticed. Each test failed on the build before its fix."""
import json
import os
import socket
import unittest

from harness import StrataTestCase, wait_until

MODEL = "/usr/lib/python3/dist-packages/botocore/data/rds/2014-10-31/service-2.json"
DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "api.md")


class ForeignArns(StrataTestCase):
    """An ARN of another region, account, partition or service never names a
    resource here, and nothing is stored under it."""

    def setUp(self):
        super().setUp()
        self.arn = self.create_instance("app", "--backup-retention-period", "0")["DBInstanceArn"]
        _, _, _, self.region, self.account, _, _ = self.arn.split(":", 6)
        self.rds = self.client()

    def code_of(self, call, **kwargs):
        with self.assertRaises(self.rds.exceptions.ClientError) as caught:
            call(**kwargs)
        return caught.exception.response["Error"]["Code"]

    def test_tags_on_foreign_arns_are_refused(self):
        foreign = [
            f"arn:aws:rds:us-west-2:{self.account}:db:app",
            f"arn:aws:rds:{self.region}:111111111111:db:app",
            f"arn:aws:ec2:{self.region}:{self.account}:db:app",
            f"arn:aws-cn:rds:{self.region}:{self.account}:db:app",
        ]
        for arn in foreign:
            self.assertEqual(self.code_of(self.rds.add_tags_to_resource, ResourceName=arn,
                                          Tags=[{"Key": "k", "Value": "v"}]), "InvalidParameterValue", arn)
            self.assertEqual(self.code_of(self.rds.list_tags_for_resource, ResourceName=arn),
                             "InvalidParameterValue", arn)
        self.assertEqual(self.rds.list_tags_for_resource(ResourceName=self.arn)["TagList"], [])
        # The instance's own ARN, in any case of its identifier, is the same resource.
        self.rds.add_tags_to_resource(ResourceName=self.arn.replace(":db:app", ":db:APP"),
                                      Tags=[{"Key": "k", "Value": "v"}])
        self.assertEqual(self.rds.list_tags_for_resource(ResourceName=self.arn)["TagList"],
                         [{"Key": "k", "Value": "v"}])

    def test_snapshot_arns_of_another_account_or_type_are_refused(self):
        self.rds.create_db_snapshot(DBInstanceIdentifier="app", DBSnapshotIdentifier="s1")
        self.rds.get_waiter("db_snapshot_available").wait(DBSnapshotIdentifier="s1",
                                                          WaiterConfig={"Delay": 1})
        own = f"arn:aws:rds:{self.region}:{self.account}:snapshot:s1"
        other_account = f"arn:aws:rds:{self.region}:111111111111:snapshot:s1"
        self.assertEqual(self.code_of(self.rds.copy_db_snapshot, SourceDBSnapshotIdentifier=other_account,
                                      TargetDBSnapshotIdentifier="s2"), "InvalidParameterValue")
        bad_type = f"arn:aws:rds:{self.region}:{self.account}:snapshotx:s1"
        self.assertEqual(self.code_of(self.rds.describe_db_snapshots, DBSnapshotIdentifier=bad_type),
                         "InvalidParameterValue")
        self.rds.copy_db_snapshot(SourceDBSnapshotIdentifier=own, TargetDBSnapshotIdentifier="s2")
        self.assertEqual(
            self.rds.describe_db_snapshots(DBSnapshotIdentifier=own)["DBSnapshots"][0]["DBSnapshotIdentifier"], "s1")

    def test_data_api_refuses_a_foreign_resource_arn(self):
        data = self.client("rds-data")
        with self.assertRaises(data.exceptions.BadRequestException) as caught:
            data.execute_statement(resourceArn=self.arn.replace(self.account, "111111111111"),
                                   secretArn=f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:x",
                                   sql="SELECT 1")
        self.assertIn("account", caught.exception.response["Error"]["Message"])


class TagsAndValues(StrataTestCase):
    def test_automated_snapshots_get_the_instances_tags(self):
        self.create_instance("app", "--copy-tags-to-snapshot", "--tags", "Key=team,Value=payments")
        rds = self.client()
        auto = rds.describe_db_snapshots(DBInstanceIdentifier="app", SnapshotType="automated")["DBSnapshots"]
        self.assertTrue(auto)
        self.assertEqual(rds.list_tags_for_resource(ResourceName=auto[0]["DBSnapshotArn"])["TagList"],
                         [{"Key": "team", "Value": "payments"}])

    def test_copy_with_copy_tags_and_tags_uses_the_requests_tags(self):
        self.create_instance("app", "--backup-retention-period", "0")
        rds = self.client()
        rds.create_db_snapshot(DBInstanceIdentifier="app", DBSnapshotIdentifier="s1",
                               Tags=[{"Key": "source", "Value": "1"}])
        rds.get_waiter("db_snapshot_available").wait(DBSnapshotIdentifier="s1", WaiterConfig={"Delay": 1})
        copy = rds.copy_db_snapshot(SourceDBSnapshotIdentifier="s1", TargetDBSnapshotIdentifier="s2",
                                    CopyTags=True, Tags=[{"Key": "request", "Value": "2"}])["DBSnapshot"]
        self.assertEqual(rds.list_tags_for_resource(ResourceName=copy["DBSnapshotArn"])["TagList"],
                         [{"Key": "request", "Value": "2"}])
        copy = rds.copy_db_snapshot(SourceDBSnapshotIdentifier="s1", TargetDBSnapshotIdentifier="s3",
                                    CopyTags=True)["DBSnapshot"]
        self.assertEqual(rds.list_tags_for_resource(ResourceName=copy["DBSnapshotArn"])["TagList"],
                         [{"Key": "source", "Value": "1"}])

    def test_blank_identifiers_and_bad_db_names_are_invalid_values(self):
        self.create_instance("app", "--backup-retention-period", "0")
        self.assertEqual(self.aws_error("rds", "create-db-snapshot", "--db-instance-identifier", "app",
                                        "--db-snapshot-identifier", ""), "InvalidParameterValue")
        rds = self.client()
        with self.assertRaises(rds.exceptions.ClientError) as caught:
            rds.create_db_snapshot(DBInstanceIdentifier="app", DBSnapshotIdentifier="")
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterValue")
        self.assertIn("must not be blank", caught.exception.response["Error"]["Message"])
        for name in ("my-db", "1db", "db name"):
            self.assertEqual(self.aws_error("rds", "create-db-instance", "--db-instance-identifier", "pg",
                                            "--db-instance-class", "db.t3.micro", "--engine", "postgres",
                                            "--master-username", "admin1", "--master-user-password",
                                            "long-secret-1", "--db-name", name), "InvalidParameterValue", name)
        names = [i["DBInstanceIdentifier"] for i in self.client().describe_db_instances()["DBInstances"]]
        self.assertEqual(names, ["app"])


class UnactedParameters(StrataTestCase):
    """No parameter is accepted and silently dropped."""

    def test_parameters_strata_cannot_honour_are_refused(self):
        rds = self.client()
        base = dict(DBInstanceIdentifier="x", DBInstanceClass="db.t3.micro", Engine="sqlite")
        refused = {
            "StorageEncrypted": True, "MultiAZ": True, "MaxAllocatedStorage": 100,
            "MonitoringInterval": 60, "MonitoringRoleArn": "arn:aws:iam::123456789012:role/m",
            "EnableIAMDatabaseAuthentication": True, "AvailabilityZone": "us-east-1a",
            "LicenseModel": "license-included", "KmsKeyId": "k", "PubliclyAccessible": True,
            "VpcSecurityGroupIds": ["sg-1"],
        }
        for name, value in refused.items():
            with self.assertRaises(rds.exceptions.ClientError, msg=name) as caught:
                rds.create_db_instance(**base, **{name: value})
            err = caught.exception.response["Error"]
            self.assertEqual(err["Code"], "InvalidParameterCombination", name)
            self.assertIn(name, err["Message"])
        with self.assertRaises(rds.exceptions.DBParameterGroupNotFoundFault):
            rds.create_db_instance(**base, DBParameterGroupName="custom")
        with self.assertRaises(rds.exceptions.OptionGroupNotFoundFault):
            rds.create_db_instance(**base, OptionGroupName="custom")
        self.assertEqual(rds.describe_db_instances()["DBInstances"], [])
        # The values that are true of Strata are accepted.
        rds.create_db_instance(**base, MultiAZ=False, StorageEncrypted=False, BackupRetentionPeriod=0,
                               DBParameterGroupName="default.sqlite3", StorageType="gp3")
        rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier="x", WaiterConfig={"Delay": 1})
        with self.assertRaises(rds.exceptions.ClientError) as caught:
            rds.modify_db_instance(DBInstanceIdentifier="x", MultiAZ=True, ApplyImmediately=True)
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterCombination")
        rds.create_db_snapshot(DBInstanceIdentifier="x", DBSnapshotIdentifier="xs")
        rds.get_waiter("db_snapshot_available").wait(DBSnapshotIdentifier="xs", WaiterConfig={"Delay": 1})
        with self.assertRaises(rds.exceptions.ClientError) as caught:
            rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="y", DBSnapshotIdentifier="xs",
                                                     Engine="postgres")
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterCombination")

    def test_docs_list_every_parameter_of_the_instance_actions(self):
        model = json.load(open(MODEL))
        docs = open(DOCS).read()
        section = docs.split("## Parameters", 1)[1].split("\n## ", 1)[0]
        for op in ("CreateDBInstance", "ModifyDBInstance", "RestoreDBInstanceFromDBSnapshot",
                   "RestoreDBInstanceToPointInTime", "CreateDBSnapshot", "CopyDBSnapshot", "DeleteDBInstance"):
            members = model["shapes"][model["operations"][op]["input"]["shape"]]["members"]
            for name in members:
                self.assertIn(f"`{name}`", section, f"{op}.{name} is not in docs/api.md's parameter table")


class Rename(StrataTestCase):
    def test_new_identifier_renames_the_instance(self):
        old_arn = self.create_instance("app", "--tags", "Key=team,Value=payments")["DBInstanceArn"]
        rds = self.client()
        with self.assertRaises(rds.exceptions.ClientError) as caught:
            rds.modify_db_instance(DBInstanceIdentifier="app", NewDBInstanceIdentifier="app2")
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterCombination")
        out = self.aws("rds", "modify-db-instance", "--db-instance-identifier", "app",
                       "--new-db-instance-identifier", "App2", "--apply-immediately")["DBInstance"]
        self.assertEqual(out["DBInstanceIdentifier"], "app2")
        self.assertEqual(out["DBInstanceArn"], old_arn.replace(":db:app", ":db:app2"))
        self.assertEqual(self.aws_error("rds", "describe-db-instances", "--db-instance-identifier", "app"),
                         "DBInstanceNotFound")
        self.assertEqual(rds.list_tags_for_resource(ResourceName=out["DBInstanceArn"])["TagList"],
                         [{"Key": "team", "Value": "payments"}])
        events = rds.describe_events(SourceType="db-instance", SourceIdentifier="app2")["Events"]
        self.assertTrue(any(e["Message"] == "Renamed instance from app to app2" for e in events), events)
        backups = rds.describe_db_instance_automated_backups(DBInstanceIdentifier="app2")
        self.assertEqual(len(backups["DBInstanceAutomatedBackups"]), 1)
        data = self.client("rds-data")
        r = data.execute_statement(resourceArn=out["DBInstanceArn"], sql="SELECT 7",
                                   secretArn="arn:aws:secretsmanager:us-east-1:123456789012:secret:x")
        self.assertEqual(r["records"], [[{"longValue": 7}]])
        # The old name is free again.
        self.create_instance("app", "--backup-retention-period", "0")
        self.assertEqual(self.aws_error("rds", "modify-db-instance", "--db-instance-identifier", "app",
                                        "--new-db-instance-identifier", "app2", "--apply-immediately"),
                         "DBInstanceAlreadyExists")


class AvailableAfterTheFirstBackup(StrataTestCase):
    """RDS reports a new instance available only once its first automated
    backup exists: right after the waiter, point-in-time restore and snapshots work."""

    def check_ready_right_after_the_waiter(self, name, *create):
        self.aws("rds", "create-db-instance", "--db-instance-identifier", name,
                 "--db-instance-class", "db.t3.micro", *create)
        rds = self.client()
        # boto3's waiter is the CLI's (the same model), polled faster.
        rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=name, WaiterConfig={"Delay": 0.2})
        inst = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
        self.assertEqual(inst["DBInstanceStatus"], "available")
        self.assertIn("LatestRestorableTime", inst)
        backups = rds.describe_db_instance_automated_backups(DBInstanceIdentifier=name)
        self.assertEqual(backups["DBInstanceAutomatedBackups"][0]["Status"], "active")
        rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier=name,
                                                 TargetDBInstanceIdentifier=name + "-pit",
                                                 UseLatestRestorableTime=True)
        rds.create_db_snapshot(DBInstanceIdentifier=name, DBSnapshotIdentifier=name + "-s")
        events = [e["Message"] for e in
                  rds.describe_events(SourceType="db-instance", SourceIdentifier=name)["Events"]]
        self.assertLess(events.index("Finished DB Instance backup"), events.index("DB instance created"), events)
        rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=name + "-pit", WaiterConfig={"Delay": 1})
        with open(self.server.log_path) as f:
            self.assertNotIn("continuity broken", f.read(), "a new instance's log starting is no break")
        # The restored instance also reports available only with its own first backup.
        self.assertIn("LatestRestorableTime",
                      rds.describe_db_instances(DBInstanceIdentifier=name + "-pit")["DBInstances"][0])

    def test_sqlite(self):
        for n in range(3):
            self.check_ready_right_after_the_waiter(f"app{n}", "--engine", "sqlite")

    def test_postgres(self):
        self.check_ready_right_after_the_waiter("pg", "--engine", "postgres", "--master-username", "admin1",
                                                "--master-user-password", "long-secret-1")


class PostgresPorts(StrataTestCase):
    def test_a_port_another_process_holds_fails_with_the_reason(self):
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        self.aws("rds", "create-db-instance", "--db-instance-identifier", "pg", "--engine", "postgres",
                 "--db-instance-class", "db.t3.micro", "--master-username", "admin1",
                 "--master-user-password", "long-secret-1", "--port", str(port), "--backup-retention-period", "0")
        rds = self.client()
        status = wait_until(lambda: (rds.describe_db_instances(DBInstanceIdentifier="pg")["DBInstances"][0]
                                     ["DBInstanceStatus"] in ("failed", "available")) and
                            rds.describe_db_instances(DBInstanceIdentifier="pg")["DBInstances"][0]["DBInstanceStatus"],
                            timeout=120, what="pg to settle")
        # A port the caller asked for is not moved: the instance fails, saying why.
        self.assertEqual(status, "failed")
        events = [e["Message"] for e in rds.describe_events(SourceType="db-instance", SourceIdentifier="pg")["Events"]]
        self.assertTrue(any("Address already in use" in m for m in events), events)


if __name__ == "__main__":
    unittest.main()
