"""deploy_progress from Python with psycopg 3.

A worker moves a job through its phases and updates its counters, one
transaction per step, the way a real worker does; a second connection
LISTENs on the tables' channel and receives one JSON payload per phase
transition (table, key, from, to, at, percent, reason; "from" is null for
an INSERT), at commit, none for counter updates and none for a rolled-back
transition.

Connects with the PG* environment variables (test/clients/run.sh sets them).
Run: python3 -m unittest -v test_worker_listener
"""

import json
import threading
import time
import unittest
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

CHANNEL = "deploy_progress"  # the default channel of track()
STOP = "test_worker_listener: stop"


class Listener(threading.Thread):
    """A connection of its own that LISTENs and keeps what arrives, until a
    notification with the payload STOP."""

    def __init__(self, channel):
        super().__init__(daemon=True)
        self.channel = channel
        self.conn = psycopg.connect(autocommit=True)
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.received = []

    def run(self):
        for n in self.conn.notifies():
            if n.payload == STOP:
                break
            self.received.append(n)
        self.conn.close()

    def stop(self, conn):
        """Send STOP after everything conn committed, and wait for it: the
        notifications of committed transactions arrive in commit order."""
        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, STOP))
        conn.commit()
        self.join(timeout=30)
        if self.is_alive():
            raise AssertionError("the listener did not receive its stop notification")


def work(conn, job_id, counts, total):
    """The worker: report progress on job_id, one transaction per batch."""
    for done in counts:
        conn.execute(
            "UPDATE py.jobs SET completed_items = %s, total_items = %s WHERE id = %s",
            (done, total, job_id),
        )
        conn.commit()


def move(conn, job_id, phase, **counters):
    sets = [sql.SQL("phase = %s")] + [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in counters]
    conn.execute(
        sql.SQL("UPDATE py.jobs SET {} WHERE id = %s").format(sql.SQL(", ").join(sets)),
        (phase, *counters.values(), job_id),
    )
    conn.commit()


class WorkerListenerTest(unittest.TestCase):
    def setUp(self):
        self.conn = psycopg.connect()
        self.conn.execute("""
            CREATE SCHEMA py;
            CREATE TABLE py.jobs (
                id                  integer PRIMARY KEY,
                phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
                completed_items     bigint,
                total_items         bigint,
                phase_updated_at    timestamptz,
                progress_updated_at timestamptz,
                heartbeat_at        timestamptz,
                started_at          timestamptz,
                finished_at         timestamptz,
                items_per_second    double precision,
                speed_updated_at    timestamptz,
                failure_reason      text
            );
            SELECT deploy_progress.track('py.jobs');
        """)
        self.conn.commit()

    def tearDown(self):
        self.conn.rollback()
        self.conn.execute("SELECT deploy_progress.untrack('py.jobs'); DROP SCHEMA py CASCADE")
        self.conn.commit()
        self.conn.close()

    def figures(self, job_id):
        (f,) = self.conn.execute(
            "SELECT deploy_progress.progress('py.jobs', %s)", (str(job_id),)).fetchone()
        self.conn.commit()
        return f

    def test_worker_updates_counters(self):
        self.conn.execute("INSERT INTO py.jobs (id) VALUES (1)")
        self.conn.commit()
        move(self.conn, 1, "transferring", completed_items=0, total_items=400)
        before = self.figures(1)
        for done in (100, 200, 300):
            time.sleep(0.05)
            work(self.conn, 1, [done], 400)
        f = self.figures(1)
        self.assertEqual(f["phase"], "transferring")
        self.assertEqual(f["kind"], "active")
        self.assertEqual((f["completed"], f["total"], f["percent"]), (300, 400, 75))
        self.assertGreater(f["speed"], 0)
        self.assertGreater(f["eta_seconds"], 0)
        # counter updates move the progress time, not the phase time
        self.assertEqual(f["phase_updated_at"], before["phase_updated_at"])
        self.assertGreater(f["progress_updated_at"], before["progress_updated_at"])
        (line,) = self.conn.execute("SELECT deploy_progress.describe('py.jobs', '1')").fetchone()
        self.assertRegex(line, r"^Transferring: 300/400 \(75\.0%\) . [0-9.,]+ items/(s|min) . ETA ")

        # a count beyond the total is refused, and the row keeps its counters
        with self.assertRaises(psycopg.errors.CheckViolation) as cm:
            work(self.conn, 1, [401], 400)
        self.assertEqual(cm.exception.sqlstate, "23514")
        self.conn.rollback()
        self.assertEqual(self.figures(1)["completed"], 300)

    def test_listener_receives_transitions(self):
        started = self.conn.execute("SELECT now()").fetchone()[0]
        self.conn.commit()
        listener = Listener(CHANNEL)
        listener.start()

        self.conn.execute("INSERT INTO py.jobs (id) VALUES (1), (2)")
        self.conn.commit()
        move(self.conn, 1, "fetching")
        work(self.conn, 1, [1, 2, 3], 3)                       # counters: no NOTIFY
        move(self.conn, 1, "transferring", completed_items=0, total_items=200)
        work(self.conn, 1, [50, 100, 150], 200)                # counters: no NOTIFY
        with self.conn.transaction():                          # rolled back: no NOTIFY
            self.conn.execute("UPDATE py.jobs SET phase = 'migrating' WHERE id = 1")
            raise psycopg.Rollback()
        move(self.conn, 1, "succeeded", completed_items=200)
        move(self.conn, 2, "building")
        # job 2's worker is gone: an hour later fail_stuck() fails it
        failed = self.conn.execute(
            "SELECT key, from_phase, to_phase, reason"
            "  FROM deploy_progress.fail_stuck('py.jobs', as_of => now() + interval '1 hour')").fetchall()
        self.conn.commit()
        self.assertEqual(failed, [("2", "building", "failed", "no_heartbeat")])
        listener.stop(self.conn)

        payloads = [json.loads(n.payload) for n in listener.received]
        self.assertTrue(all(n.channel == CHANNEL for n in listener.received))
        self.assertEqual(
            [(p["table"], p["key"], p["from"], p["to"], p["percent"], p["reason"]) for p in payloads],
            [
                ("py.jobs", "1", None, "queued", None, None),
                ("py.jobs", "2", None, "queued", None, None),
                ("py.jobs", "1", "queued", "fetching", None, None),
                ("py.jobs", "1", "fetching", "transferring", 0, None),
                ("py.jobs", "1", "transferring", "succeeded", 100, None),
                ("py.jobs", "2", "queued", "building", None, None),
                ("py.jobs", "2", "building", "failed", None, "no_heartbeat"),
            ],
        )
        for p in payloads:
            self.assertEqual(set(p), {"table", "key", "from", "to", "at", "percent", "reason"})
            at = datetime.fromisoformat(p["at"])
            self.assertTrue(started <= at <= started + timedelta(minutes=5), p["at"])
            self.assertLess(len(json.dumps(p)), 8000)
        ats = [datetime.fromisoformat(p["at"]) for p in payloads]
        self.assertEqual(ats, sorted(ats))


if __name__ == "__main__":
    unittest.main()
