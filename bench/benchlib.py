"""What the API benchmarks share: a SQLite database filled to a size with
rows half compressible text, half random bytes."""
import sqlite3


def fill(path, size_mib):
    """Fills table t to about size_mib; returns the row count."""
    rows = size_mib * 1024 * 1024 // 2200
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, txt TEXT, blob BLOB)")
        for start in range(0, rows, 20000):
            n = min(20000, rows - start)
            db.executemany("INSERT INTO t (txt, blob) VALUES (?, randomblob(1000))",
                           [("customer %d order %d " % (i, i * 7) * 20,) for i in range(start, start + n)])
            db.commit()
    return rows


def start_server(stratad, extra_args=()):
    """Starts `stratad` on a temp data dir: (server, test case, RDS client, tmp).
    The caller stops the server and removes tmp."""
    import os
    import tempfile
    import harness
    harness.STRATAD = os.path.abspath(stratad)
    tmp = tempfile.mkdtemp(prefix="strata-bench-")
    server = harness.Stratad(os.path.join(tmp, "data"), list(extra_args)).start()
    case = harness.StrataTestCase()
    case.server, case.data_dir, case.tmp = server, server.data_dir, tmp
    return server, case, case.client(), tmp
