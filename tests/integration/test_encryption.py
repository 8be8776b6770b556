"""An encrypted backup repository end to end: stratad started with a key
file, a snapshot and a restore through the aws CLI, `strata repo verify`
with the recorded key, nothing readable in the repository's files, and a
restart with a wrong or no key refused with the reason."""
import os
import secrets
import sqlite3
import unittest

from harness import ON_S3, Stratad, StrataTestCase

MARKER = "strata-encryption-marker-%s" % secrets.token_hex(8)


def write_key(path, key_hex):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(key_hex + "\n")
    return path


@unittest.skipIf(ON_S3, "the repository files are read from the data dir")
class EncryptedRepository(StrataTestCase):
    def setUp(self):
        super().setUp()
        # Replace the default server with one over a new data dir, whose new
        # repository is encrypted.
        self.server.stop()
        self.data_dir = os.path.join(self.tmp, "encrypted")
        self.key = write_key(os.path.join(self.tmp, "repo.key"), secrets.token_hex(32))
        self.server = Stratad(self.data_dir, ["--repo-key-file", self.key, "--repo-key-id", "it-key"]).start()

    def test_snapshot_restore_verify_and_wrong_key(self):
        self.create_instance("app")
        path = self.aws("rds", "describe-db-instances", "--db-instance-identifier",
                        "app")["DBInstances"][0]["Endpoint"]["Address"]
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            db.executemany("INSERT INTO t (v) VALUES (?)", [("%s row %d" % (MARKER, i),) for i in range(3000)])
        self.aws("rds", "create-db-snapshot", "--db-instance-identifier", "app", "--db-snapshot-identifier", "s1")
        self.aws("rds", "wait", "db-snapshot-available", "--db-snapshot-identifier", "s1")
        snap = self.aws("rds", "describe-db-snapshots", "--db-snapshot-identifier", "s1")["DBSnapshots"][0]
        self.assertTrue(snap["Encrypted"], "a snapshot in an encrypted repository reports Encrypted")
        self.aws("rds", "restore-db-instance-from-db-snapshot", "--db-instance-identifier", "copy",
                 "--db-snapshot-identifier", "s1")
        self.aws("rds", "wait", "db-instance-available", "--db-instance-identifier", "copy")
        copy = self.aws("rds", "describe-db-instances", "--db-instance-identifier",
                        "copy")["DBInstances"][0]["Endpoint"]["Address"]
        with sqlite3.connect(copy) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM t").fetchone()[0], 3000)
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")

        # The repository holds the config, the wrapped keys and ciphertext:
        # neither the rows nor the key appear in any of its files.
        repo = os.path.join(self.data_dir, "repo")
        with open(self.key) as f:
            key_hex = f.read().strip()
        seen = []
        for root, _, files in os.walk(repo):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    data = f.read()
                seen.append(os.path.relpath(os.path.join(root, name), repo))
                self.assertNotIn(MARKER.encode(), data, name)
                self.assertNotIn(key_hex.encode(), data, name)
                self.assertNotIn(bytes.fromhex(key_hex), data, name)
        self.assertIn("keys/it-key", seen)
        with open(os.path.join(repo, "config")) as f:
            self.assertIn('"aes-256-gcm"', f.read())

        # strata repo finds the key stratad recorded (its path, not the key).
        with open(os.path.join(self.data_dir, "repository-key")) as f:
            self.assertNotIn(key_hex, f.read())
        p = self.strata("repo", "verify")
        self.assertRegex(p.stdout, r"full verify: \d+ snapshots, \d+ chunks re-hashed, 0 problems")
        self.strata("repo", "stats")
        wrong = write_key(os.path.join(self.tmp, "wrong.key"), secrets.token_hex(32))
        p = self.strata("repo", "verify", "--repo-key-file", wrong, "--repo-key-id", "it-key", expect_rc=None)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("encrypted with key id it-key; the key given does not match", p.stderr)

        # A restart with the wrong key, or with none, stops at start with the reason.
        self.server.stop()
        for args, reason in (
                (["--repo-key-file", wrong, "--repo-key-id", "it-key"],
                 "encrypted with key id it-key; the key given does not match"),
                (["--repo-key-file", wrong], "the key given has key id key-"),
                ([], "encrypted with key id it-key; no key was given")):
            bad = Stratad(self.data_dir, args)
            with self.assertRaises(AssertionError) as ctx:
                bad.start()
            self.assertIn(reason, str(ctx.exception))
            self.assertIn("KMSKeyNotAccessibleFault", str(ctx.exception))
        # The right key again: everything is there.
        self.server = Stratad(self.data_dir, ["--repo-key-file", self.key, "--repo-key-id", "it-key"]).start()
        snaps = self.aws("rds", "describe-db-snapshots", "--db-snapshot-identifier", "s1")["DBSnapshots"]
        self.assertEqual(snaps[0]["Status"], "available")

    def test_a_key_for_an_unencrypted_repository_is_refused(self):
        self.server.stop()
        plain_dir = os.path.join(self.tmp, "plain")
        Stratad(plain_dir).start().stop()
        bad = Stratad(plain_dir, ["--repo-key-file", self.key])
        with self.assertRaises(AssertionError) as ctx:
            bad.start()
        self.assertIn("is not encrypted, but a key was given", str(ctx.exception))
        self.server = Stratad(self.data_dir, ["--repo-key-file", self.key, "--repo-key-id", "it-key"]).start()


if __name__ == "__main__":
    unittest.main()
