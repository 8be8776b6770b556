"""The RDS Data API against sqlite instances: aws rds-data and boto3."""
import json
import sqlite3
import unittest

from harness import StrataTestCase

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:any"


class DataApi(StrataTestCase):
    def setUp(self):
        super().setUp()
        self.arn = self.create_instance("app")["DBInstanceArn"]

    def exec(self, sql, *extra):
        return self.aws("rds-data", "execute-statement", "--resource-arn", self.arn,
                        "--secret-arn", SECRET, "--sql", sql, *extra)

    def test_execute_statement_with_the_aws_cli(self):
        self.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)")
        out = self.exec("INSERT INTO t (name, score) VALUES (:name, :score)", "--parameters",
                        json.dumps([{"name": "name", "value": {"stringValue": "ann"}},
                                    {"name": "score", "value": {"doubleValue": 2.5}}]))
        self.assertEqual(out["numberOfRecordsUpdated"], 1)
        self.assertEqual(out["generatedFields"], [{"longValue": 1}])
        out = self.exec("SELECT id, name, score, data FROM t", "--include-result-metadata")
        self.assertEqual(out["records"], [[{"longValue": 1}, {"stringValue": "ann"},
                                           {"doubleValue": 2.5}, {"isNull": True}]])
        self.assertEqual([c["name"] for c in out["columnMetadata"]], ["id", "name", "score", "data"])
        out = self.exec("SELECT name FROM t", "--format-records-as", "JSON")
        self.assertEqual(json.loads(out["formattedRecords"]), [{"name": "ann"}])
        code = self.aws_error("rds-data", "execute-statement", "--resource-arn", self.arn,
                              "--secret-arn", SECRET, "--sql", "SELEKT 1")
        self.assertEqual(code, "BadRequestException")

    def test_sql_errors_carry_sqlites_message(self):
        data = self.client("rds-data")
        with self.assertRaises(data.exceptions.BadRequestException) as e:
            data.execute_statement(resourceArn=self.arn, secretArn=SECRET, sql="SELECT * FROM nope")
        self.assertIn("no such table: nope", str(e.exception))
        missing = self.arn.replace(":db:app", ":db:missing")
        with self.assertRaises(data.exceptions.ClientError) as e:
            data.execute_statement(resourceArn=missing, secretArn=SECRET, sql="SELECT 1")
        self.assertEqual(e.exception.response["Error"]["Code"], "NotFoundException")

    def test_transactions_and_batches_with_boto3(self):
        data = self.client("rds-data")
        data.execute_statement(resourceArn=self.arn, secretArn=SECRET, sql="CREATE TABLE t (x INTEGER)")
        tx = data.begin_transaction(resourceArn=self.arn, secretArn=SECRET)["transactionId"]
        data.execute_statement(resourceArn=self.arn, secretArn=SECRET, sql="INSERT INTO t VALUES (1)",
                               transactionId=tx)
        self.assertEqual(data.rollback_transaction(resourceArn=self.arn, secretArn=SECRET,
                                                   transactionId=tx)["transactionStatus"], "Rollback Complete")
        tx = data.begin_transaction(resourceArn=self.arn, secretArn=SECRET)["transactionId"]
        data.batch_execute_statement(resourceArn=self.arn, secretArn=SECRET, sql="INSERT INTO t VALUES (:x)",
                                     transactionId=tx,
                                     parameterSets=[[{"name": "x", "value": {"longValue": i}}] for i in range(5)])
        self.assertEqual(data.commit_transaction(resourceArn=self.arn, secretArn=SECRET,
                                                 transactionId=tx)["transactionStatus"], "Transaction Committed")
        with self.assertRaises(data.exceptions.NotFoundException):
            data.commit_transaction(resourceArn=self.arn, secretArn=SECRET, transactionId=tx)
        # A batch that fails half-way applies nothing.
        with self.assertRaises(data.exceptions.BadRequestException):
            data.batch_execute_statement(
                resourceArn=self.arn, secretArn=SECRET, sql="INSERT INTO t VALUES (:x)",
                parameterSets=[[{"name": "x", "value": {"longValue": 100}}],
                               [{"name": "x", "value": {"arrayValue": {"longValues": [1]}}}]])
        path = self.aws("rds", "describe-db-instances")["DBInstances"][0]["Endpoint"]["Address"]
        with sqlite3.connect(path) as db:
            self.assertEqual([r[0] for r in db.execute("SELECT x FROM t ORDER BY x")], [0, 1, 2, 3, 4])


if __name__ == "__main__":
    unittest.main()
