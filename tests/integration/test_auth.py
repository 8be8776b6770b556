"""SigV4 and malformed input: hand-made requests for each failure, so that no
input reaches a 500 or a crash."""
import datetime
import http.client
import unittest
from unittest import mock
import urllib.parse

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness import StrataTestCase


class Auth(StrataTestCase):
    def send(self, method, path, body=b"", headers=None):
        u = urllib.parse.urlparse(self.server.endpoint)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read().decode(errors="replace")
        conn.close()
        return r.status, data

    def signed(self, body, key=None, secret=None, service="rds", when=None, path="/"):
        akid, sk = self.credentials()
        req = AWSRequest(method="POST", url=self.server.endpoint + path, data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        auth = SigV4Auth(Credentials(key or akid, secret or sk), service, "us-east-1")
        if when:
            with mock.patch("botocore.auth.datetime") as dt:
                dt.datetime.utcnow.return_value = when
                auth.add_auth(req)
        else:
            auth.add_auth(req)
        return self.send("POST", path, body, dict(req.headers.items()))

    def code(self, body):
        return body.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in body else body

    def test_good_signature_works(self):
        status, body = self.signed(b"Action=DescribeDBInstances&Version=2014-10-31")
        self.assertEqual(status, 200, body)
        self.assertIn("<DescribeDBInstancesResult>", body)

    def test_each_failure_has_its_code(self):
        body = b"Action=DescribeDBInstances&Version=2014-10-31"
        status, text = self.send("POST", "/", body, {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((status, self.code(text)), (403, "MissingAuthenticationToken"))
        status, text = self.signed(body, key="AKIAUNKNOWNUNKNOWN00")
        self.assertEqual((status, self.code(text)), (403, "InvalidClientTokenId"))
        status, text = self.signed(body, secret="wrong-secret")
        self.assertEqual((status, self.code(text)), (403, "SignatureDoesNotMatch"))
        old = datetime.datetime.utcnow() - datetime.timedelta(minutes=20)
        status, text = self.signed(body, when=old)
        self.assertIn(status, (400, 403))
        self.assertEqual(self.code(text), "RequestExpired")
        status, text = self.send("POST", "/", body, {"Authorization": "AWS4-HMAC-SHA256 garbage",
                                                     "X-Amz-Date": "20261124T000000Z"})
        self.assertEqual(self.code(text), "IncompleteSignature")
        self.assertLess(status, 500)

    def test_presigned_query_string_works(self):
        akid, sk = self.credentials()
        url = self.server.endpoint + "/?Action=DescribeDBInstances&Version=2014-10-31"
        req = AWSRequest(method="GET", url=url)
        SigV4QueryAuth(Credentials(akid, sk), "rds", "us-east-1", expires=300).add_auth(req)
        status, text = self.send("GET", req.url[len(self.server.endpoint):])
        self.assertEqual(status, 200, text)

    def test_query_api_errors(self):
        cases = {
            b"Action=NoSuchThing&Version=2014-10-31": "InvalidAction",
            b"Version=2014-10-31": "MissingAction",
            b"Action=DescribeDBInstances": "MissingParameter",
            b"Action=CreateDBInstance&Version=2014-10-31&DBInstanceClass=db.t3.micro&Engine=sqlite":
                "MissingParameter",
            b"Action=DescribeDBInstances&Version=2014-10-31&MaxRecords=abc": "InvalidParameterValue",
        }
        for body, want in cases.items():
            status, text = self.signed(body)
            self.assertEqual(self.code(text), want, body)
            self.assertEqual(status, 400, body)

    def test_malformed_input_never_reaches_a_500(self):
        bodies = [
            b"Action=DescribeDBInstances&Version=2014-10-31&Marker=%ZZ",
            b"Action=DescribeDBInstances&Version=2014-10-31&Marker=%",
            b"Action=DescribeDBInstances&Version=2014-10-31&Marker=%C3%28",
            b"Action=DescribeDBInstances&Version=2014-10-31&MaxRecords=999999999999999999999999",
            b"Action=DescribeDBInstances&Action=DescribeDBInstances&Version=2014-10-31&Version=x",
            b"Action=CreateDBInstance&Version=2014-10-31&DBInstanceIdentifier=a&DBInstanceClass=db.x"
            b"&Engine=sqlite&Tags.Tag.99999999999.Key=k",
            b"Action=CreateDBInstance&Version=2014-10-31&DBInstanceIdentifier=\xff\xfe&DBInstanceClass=db.x&Engine=sqlite",
            b"Action=DescribeDBInstances&Version=2014-10-31&Filters.Filter.1.Name=engine"
            b"&Filters.Filter.1.Values.Value.-1=x",
            b"&&&===&&",
            b"Action=AddTagsToResource&Version=2014-10-31&ResourceName=arn:aws:rds:::db:&Tags.Tag.1.Value=v",
        ]
        for body in bodies:
            status, text = self.signed(body)
            self.assertLess(status, 500, (body, text))
            self.assertGreaterEqual(status, 200)
        status, _ = self.send("GET", "/health")
        self.assertEqual(status, 200)

    def test_oversized_body_gets_413(self):
        body = b"Action=DescribeDBInstances&Version=2014-10-31&Pad=" + b"x" * (2 << 20)
        try:
            status, _ = self.signed(body)
        except (ConnectionError, http.client.HTTPException):
            status = 413  # the server may close before the client has sent it all
        self.assertEqual(status, 413)
        status, _ = self.send("GET", "/health")
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
