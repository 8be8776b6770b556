"""Issue 20, authentication: a signature binds its body, its region and its
service. Each attack here was a working exploit on an earlier build."""
import hashlib
import http.client
import json
import unittest
import urllib.parse
import xml.etree.ElementTree as ET

import boto3

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness import StrataTestCase

DESCRIBE = b"Action=DescribeDBInstances&Version=2014-10-31"
DELETE_VICTIM = (b"Action=DeleteDBInstance&Version=2014-10-31&DBInstanceIdentifier=victim"
                 b"&SkipFinalSnapshot=true")
FORM = "application/x-www-form-urlencoded; charset=utf-8"


class SignatureBinding(StrataTestCase):
    def send(self, path, body, headers):
        u = urllib.parse.urlparse(self.server.endpoint)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read().decode(errors="replace")
        conn.close()
        return r.status, data, dict(r.getheaders())

    def sign(self, body, service="rds", region="us-east-1", path="/", headers=None):
        """The headers botocore's own signer puts on a request."""
        akid, sk = self.credentials()
        req = AWSRequest(method="POST", url=self.server.endpoint + path, data=body,
                         headers=headers or {"Content-Type": FORM})
        SigV4Auth(Credentials(akid, sk), service, region).add_auth(req)
        return dict(req.headers.items())

    @staticmethod
    def xml_error(text):
        root = ET.fromstring(text)
        return root.findtext(".//{*}Code"), root.findtext(".//{*}Message")

    def victim_exists(self):
        names = [i["DBInstanceIdentifier"] for i in
                 self.client().describe_db_instances()["DBInstances"]]
        return "victim" in names

    def test_a_captured_request_cannot_carry_another_body(self):
        self.aws("rds", "create-db-instance", "--db-instance-identifier", "victim",
                 "--db-instance-class", "db.t3.micro", "--engine", "sqlite",
                 "--backup-retention-period", "0")
        self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", "victim")
        captured = self.sign(DESCRIBE)
        status, _, _ = self.send("/", DESCRIBE, captured)
        self.assertEqual(status, 200)
        for declared in (hashlib.sha256(DESCRIBE).hexdigest(), "UNSIGNED-PAYLOAD"):
            replay = dict(captured, **{"x-amz-content-sha256": declared})
            status, text, _ = self.send("/", DELETE_VICTIM, replay)
            self.assertEqual(status, 403, text)
            self.assertEqual(self.xml_error(text)[0], "SignatureDoesNotMatch")
        self.assertTrue(self.victim_exists())

    def test_unsigned_payload_is_refused_for_rds(self):
        headers = {"Content-Type": FORM, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
        akid, sk = self.credentials()
        req = AWSRequest(method="POST", url=self.server.endpoint + "/", data=DESCRIBE, headers=headers)
        # botocore signs the declared hash when the header is there (its S3 way).
        auth = SigV4Auth(Credentials(akid, sk), "rds", "us-east-1")
        auth.payload = lambda request: "UNSIGNED-PAYLOAD"
        auth.add_auth(req)
        signed = dict(req.headers.items())
        self.assertIn("x-amz-content-sha256", signed["Authorization"])
        status, text, _ = self.send("/", DESCRIBE, signed)
        self.assertEqual(status, 403, text)
        code, message = self.xml_error(text)
        self.assertEqual(code, "SignatureDoesNotMatch")
        self.assertIn("UNSIGNED-PAYLOAD", message)

    def test_a_signed_hash_that_is_the_bodys_is_accepted(self):
        headers = {"Content-Type": FORM, "x-amz-content-sha256": hashlib.sha256(DESCRIBE).hexdigest()}
        status, text, _ = self.send("/", DESCRIBE, self.sign(DESCRIBE, headers=headers))
        self.assertEqual(status, 200, text)

    def test_the_scope_must_name_this_region(self):
        for region in ("eu-west-1", "zz-fake-9"):
            status, text, _ = self.send("/", DESCRIBE, self.sign(DESCRIBE, region=region))
            self.assertEqual(status, 403, text)
            self.assertEqual(self.xml_error(text),
                             ("SignatureDoesNotMatch",
                              f"Credential should be scoped to a valid region, not '{region}'."))
        # The real CLI configured for another region is told why.
        self.assertEqual(self.aws_error("rds", "describe-db-instances", "--region", "eu-west-1"),
                         "SignatureDoesNotMatch")

    def test_the_scope_must_name_this_service(self):
        for service in ("ec2", "rds-data", "s3"):
            status, text, _ = self.send("/", DESCRIBE, self.sign(DESCRIBE, service=service))
            self.assertEqual(status, 403, text)
            self.assertEqual(self.xml_error(text),
                             ("SignatureDoesNotMatch", "Credential should be scoped to correct service: 'rds'."))

    def test_data_api_refuses_other_scopes_in_its_json_protocol(self):
        body = json.dumps({"resourceArn": "arn:aws:rds:us-east-1:000000000000:db:x",
                           "secretArn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:x",
                           "sql": "SELECT 1"}).encode()
        json_headers = {"Content-Type": "application/json"}
        for service, region in (("rds", "us-east-1"), ("rds-data", "eu-west-1")):
            signed = self.sign(body, service=service, region=region, path="/Execute", headers=json_headers)
            status, text, headers = self.send("/Execute", body, signed)
            self.assertEqual(status, 403, text)
            self.assertEqual(headers.get("x-amzn-ErrorType"), "InvalidSignatureException")
            self.assertIn("Credential should be scoped", json.loads(text)["message"])
        # boto3's rds-data client in another region gets the same, as an exception it knows.
        akid, sk = self.credentials()
        client = boto3.session.Session(aws_access_key_id=akid, aws_secret_access_key=sk,
                                       region_name="eu-west-1").client(
            "rds-data", endpoint_url=self.server.endpoint)
        with self.assertRaises(client.exceptions.ClientError) as caught:
            client.execute_statement(resourceArn="arn:aws:rds:eu-west-1:000000000000:db:x",
                                     secretArn="arn:aws:secretsmanager:eu-west-1:000000000000:secret:x",
                                     sql="SELECT 1")
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidSignatureException")


if __name__ == "__main__":
    unittest.main()
