"""An internal failure reaches the client as the protocol's internal error,
with a generic message and the request id: no file path, errno text or SQL.
The detail is in stratad's log under the same request id."""
import os
import shutil
import unittest

from harness import StrataTestCase

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:any"


class InternalErrors(StrataTestCase):
    def test_a_data_api_failure_below_the_api_tells_the_client_nothing_internal(self):
        inst = self.create_instance("gone")
        # The instance's files vanish under Strata: opening a session fails
        # with an I/O error that names the path.
        instance_dir = os.path.join(self.data_dir, "instances", inst["DbiResourceId"])
        shutil.rmtree(instance_dir)
        data = self.client("rds-data")
        with self.assertRaises(data.exceptions.ClientError) as caught:
            data.execute_statement(resourceArn=inst["DBInstanceArn"], secretArn=SECRET, sql="SELECT 1")
        response = caught.exception.response
        message = response["Error"]["Message"]
        request_id = response["ResponseMetadata"]["RequestId"]
        self.assertIn(response["Error"]["Code"], ("InternalServerErrorException", "BadRequestException"))
        self.assertNotIn(self.data_dir, message)
        self.assertNotIn("/", message)
        self.assertIn(request_id, message)
        with open(self.server.log_path, encoding="utf-8") as f:
            logged = [line for line in f if request_id in line and '"request"' in line]
        self.assertTrue(logged, "the request is logged")
        self.assertIn(instance_dir, logged[0], "the log keeps the detail")


if __name__ == "__main__":
    unittest.main()
