"""deploy-progress-watch, driven by a simulated deployment.

Each test starts the installed program (DEPLOY_PROGRESS_WATCH) against a
database with the extension, moves rows of a tracked table through their
phases from another connection, and checks what the program printed (plain
lines, JSON objects, or progress bars redrawn on a pseudo-terminal) and its
exit status.

Connects with the PG* environment variables (test/clients/run.sh sets them).
Run: python3 -m unittest -v test_watch
"""

import fcntl
import json
import os
import pty
import queue
import re
import signal
import struct
import subprocess
import termios
import threading
import time
import unittest

import psycopg

WATCH = os.environ.get("DEPLOY_PROGRESS_WATCH", "deploy-progress-watch")
STEP = 0.5          # seconds between the steps of a simulated deployment
POLL = "0.1"        # the watch's polling interval in the tests that poll
PLAIN = re.compile(r"^\d\d:\d\d:\d\d (\S+) (\S+) (.*)$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DONE = {"succeeded": 0, "failed": 1, "cancelled": 2}

JSON_KEYS = {"event", "at", "table", "key", "phase", "kind", "completed", "total", "percent",
             "speed", "average_speed", "smoothed_speed", "eta_seconds", "phase_elapsed_seconds",
             "elapsed_seconds", "overall_progress", "stuck_reason", "reason", "description"}


def db():
    return psycopg.connect(autocommit=True)


class Watch:
    """The program running in the background, its output read line by line
    as it comes (from a pipe, or from a pseudo-terminal with tty=True)."""

    def __init__(self, *args, tty=False, columns=100):
        self.lines = queue.Queue()
        self.chunks = []
        if tty:
            master, slave = pty.openpty()
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
            self.proc = subprocess.Popen([WATCH, *args], stdout=slave, stderr=subprocess.PIPE)
            os.close(slave)
            self.reader = threading.Thread(target=self._read_pty, args=(master,), daemon=True)
        else:
            self.proc = subprocess.Popen([WATCH, *args], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
            self.reader = threading.Thread(target=self._read_pipe, daemon=True)
        self.reader.start()

    def _read_pipe(self):
        for raw in self.proc.stdout:
            line = raw.decode().rstrip("\n")
            self.chunks.append(line + "\n")
            self.lines.put(line)
        self.lines.put(None)

    def _read_pty(self, master):
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:     # EIO: the program closed the terminal
                break
            if not data:
                break
            self.chunks.append(data.decode())
        os.close(master)
        self.lines.put(None)

    def next_line(self, timeout=10):
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise AssertionError("the watch ended early: " + self.output())
        return line

    def wait(self, timeout=30):
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        self.stderr = self.proc.stderr.read().decode()
        self.proc.stderr.close()
        if self.proc.stdout:
            self.proc.stdout.close()
        return rc

    def output(self):
        return "".join(self.chunks)


def run(*args, timeout=30):
    """Run to completion; (exit status, stdout, stderr)."""
    p = subprocess.run([WATCH, *args], capture_output=True, timeout=timeout, text=True)
    return p.returncode, p.stdout, p.stderr


def plain_rows(output):
    """Plain lines as (table, key, text)."""
    rows = []
    for line in output.splitlines():
        m = PLAIN.match(line)
        assert m, "not a plain line: %r" % line
        rows.append(m.groups())
    return rows


class WatchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = db()
        cls.conn.execute("""
            CREATE TABLE deployments (
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
            SELECT deploy_progress.track('deployments');
            CREATE TABLE jobs (LIKE deployments INCLUDING DEFAULTS);
            ALTER TABLE jobs ADD PRIMARY KEY (id);
            SELECT deploy_progress.track('jobs', notify_channel => 'jobs_events');
            CREATE TABLE untracked (id integer PRIMARY KEY);
        """)

    @classmethod
    def tearDownClass(cls):
        cls.conn.execute("""
            SELECT deploy_progress.untrack('deployments');
            SELECT deploy_progress.untrack('jobs');
            DROP TABLE deployments, jobs, untracked;
        """)
        cls.conn.close()

    def setUp(self):
        # each test starts from empty tables
        self.conn.execute("DELETE FROM deployments; DELETE FROM jobs")

    def sql(self, query, *params):
        self.conn.execute(query, params)

    def move(self, id, phase, table="deployments", **counters):
        sets = ", ".join(["phase = %s"] + ["%s = %%s" % c for c in counters])
        self.sql("UPDATE %s SET %s WHERE id = %%s" % (table, sets), phase, *counters.values(), id)

    def deploy(self, id, end="succeeded", **end_counters):
        """A simulated deployment of 40 items, one step every STEP seconds."""
        for phase, counters in [("transferring", {"completed_items": 0, "total_items": 40}),
                                ("transferring", {"completed_items": 20}),
                                ("transferring", {"completed_items": 40}),
                                ("health_check", {"completed_items": None, "total_items": None}),
                                (end, end_counters)]:
            time.sleep(STEP)
            self.move(id, phase, **counters)

    def stuck_row(self, id, phase="building", completed=None, total=None):
        """A row whose worker went silent an hour ago."""
        self.sql("SET deploy_progress.stamping = off")
        self.sql("INSERT INTO deployments (id, phase, completed_items, total_items, phase_updated_at,"
                 " progress_updated_at, heartbeat_at, started_at) SELECT %s, %s, %s, %s, t, t, t, t"
                 "  FROM (SELECT now() - interval '1 hour' AS t) x", id, phase, completed, total)
        self.sql("RESET deploy_progress.stamping")

    # -- plain lines --------------------------------------------------------

    def test_plain_deployment_that_succeeds(self):
        self.sql("INSERT INTO deployments (id) VALUES (1)")
        w = Watch("-t", "deployments", "-k", "1", "-i", POLL)
        self.deploy(1)
        self.assertEqual(w.wait(), 0, w.stderr)
        rows = plain_rows(w.output())
        self.assertTrue(all(r[:2] == ("deployments", "1") for r in rows), rows)
        texts = [r[2] for r in rows]
        # one line per change of phase or counters, in order
        expected = [r"Queued for \d+s",
                    r"Transferring: 0/40 \(0\.0%\)",
                    r"Transferring: 20/40 \(50\.0%\) . [0-9.,]+ items/s . ETA \d+s",
                    r"Transferring: 40/40 \(100\.0%\)",
                    r"Health check for \d+s",
                    r"Succeeded in \d+s"]
        self.assertEqual(len(texts), len(expected), texts)
        for text, pattern in zip(texts, expected):
            self.assertRegex(text, "^" + pattern)

    def test_plain_deployment_that_fails_or_is_cancelled(self):
        for id, end, status in [(2, "failed", 1), (3, "cancelled", 2)]:
            with self.subTest(end=end):
                self.sql("INSERT INTO deployments (id) VALUES (%s)", id)
                w = Watch("-t", "deployments", "-k", str(id), "-i", POLL)
                time.sleep(STEP)
                self.move(id, "building")
                time.sleep(STEP)
                self.move(id, end, failure_reason="disk full")
                self.assertEqual(w.wait(), status, w.stderr)
                texts = [r[2] for r in plain_rows(w.output())]
                self.assertRegex(texts[-2], r"^Building for \d+s$")
                self.assertRegex(texts[-1], r"^%s after \d+s: disk full$" % end.capitalize())

    def test_row_already_finished(self):
        self.sql("INSERT INTO deployments (id, phase) VALUES (4, 'queued')")
        self.move(4, "failed", failure_reason="quota exceeded")
        rc, out, err = run("-t", "deployments", "-k", "4")
        self.assertEqual(rc, 1, err)
        self.assertEqual([r[2] for r in plain_rows(out)], ["Failed: quota exceeded"])

    def test_every_table_and_rows_that_finish(self):
        self.sql("INSERT INTO deployments (id, total_items) VALUES (10, 5), (9, 5)")
        self.sql("INSERT INTO jobs (id, phase, completed_items, total_items) VALUES (1, 'building', 1, 4)")
        rc, out, err = run("--once")
        self.assertEqual(rc, 0, err)
        rows = plain_rows(out)
        self.assertEqual([r[:2] for r in rows], [("deployments", "9"), ("deployments", "10"), ("jobs", "1")])
        self.assertRegex(rows[2][2], r"^Building: 1/4 \(25\.0%\)")

        # a row that leaves the view is printed once more, as it ended
        w = Watch("-t", "deployments", "-i", POLL)
        self.assertRegex(w.next_line(), r" deployments 9 Queued for ")
        self.assertRegex(w.next_line(), r" deployments 10 Queued for ")
        self.move(9, "cancelled")
        self.assertRegex(w.next_line(), r" deployments 9 Cancelled$")
        self.sql("DELETE FROM deployments WHERE id = 10")
        self.assertRegex(w.next_line(), r" deployments 10 gone: ERROR:  table .*deployments has no row with key '10'")
        w.proc.send_signal(signal.SIGINT)
        self.assertEqual(w.wait(), 0, "a watch without -k ends well on SIGINT")

    def test_json_for_a_row_that_is_gone(self):
        self.sql("INSERT INTO deployments (id) VALUES (15)")
        w = Watch("-t", "deployments", "-i", POLL, "--json")
        self.assertEqual(json.loads(w.next_line())["event"], "in_flight")
        self.sql("DELETE FROM deployments WHERE id = 15")
        self.assertEqual(json.loads(w.next_line()),
                         {"event": "gone", "table": "deployments", "key": "15",
                          "error": "ERROR:  table public.deployments has no row with key '15'"})
        w.proc.send_signal(signal.SIGINT)
        self.assertEqual(w.wait(), 0)

    def test_stuck_rows_are_marked_with_their_reason(self):
        self.stuck_row(5)
        self.stuck_row(6, "transferring", 10, 100)
        self.sql("INSERT INTO deployments (id) VALUES (7)")
        rc, out, err = run("-t", "deployments", "--once")
        self.assertEqual(rc, 0, err)
        rows = plain_rows(out)
        self.assertRegex(rows[0][2], r"^Building for 1h00m  STUCK \(no_heartbeat\)$")
        # stalled counters are described as describe() and progress() do
        self.assertRegex(rows[1][2], r"^Transferring: 10/100 \(10\.0%\) . stalled, no progress for 1h00m"
                                     r"  STUCK \(no_heartbeat\)$")
        (line,) = self.conn.execute("SELECT deploy_progress.describe('deployments', '6')").fetchone()
        self.assertEqual(rows[1][2].split("  STUCK")[0], line)
        self.assertNotIn("STUCK", rows[2][2])

        rc, out, err = run("-t", "deployments", "--once", "--json")
        self.assertEqual([json.loads(l)["stuck_reason"] for l in out.splitlines()],
                         ["no_heartbeat", "no_heartbeat", None])

    # -- JSON ---------------------------------------------------------------

    def test_json_objects(self):
        self.sql("INSERT INTO deployments (id) VALUES (7)")
        w = Watch("-t", "deployments", "-k", "7", "-i", POLL, "--json")
        self.deploy(7)
        self.assertEqual(w.wait(), 0, w.stderr)
        objects = [json.loads(line) for line in w.output().splitlines()]
        for o in objects:
            self.assertEqual(set(o), JSON_KEYS)
            self.assertEqual((o["table"], o["key"]), ("deployments", "7"))
        self.assertEqual([(o["event"], o["phase"], o["kind"], o["completed"], o["total"], o["percent"])
                          for o in objects],
                         [("in_flight", "queued", "pending", None, None, None),
                          ("in_flight", "transferring", "active", 0, 40, 0),
                          ("in_flight", "transferring", "active", 20, 40, 50),
                          ("in_flight", "transferring", "active", 40, 40, 100),
                          ("in_flight", "health_check", "active", None, None, None),
                          ("finished", "succeeded", "succeeded", None, None, None)])
        self.assertGreater(objects[2]["speed"], 0)
        self.assertGreater(objects[2]["eta_seconds"], 0)
        self.assertEqual(objects[-1]["overall_progress"], 1)
        self.assertRegex(objects[-1]["description"], r"^Succeeded in \d+s$")

    # -- terminal -----------------------------------------------------------

    def test_progress_bars_on_a_terminal(self):
        self.sql("INSERT INTO deployments (id) VALUES (8)")
        w = Watch("-t", "deployments", "-k", "8", "-i", POLL, tty=True, columns=100)
        self.deploy(8)
        self.assertEqual(w.wait(), 0, w.stderr)
        out = w.output()
        self.assertTrue(out.startswith("\x1b[?25l"), "hides the cursor")
        self.assertTrue(out.endswith("\x1b[?25h"), "and shows it again")
        self.assertIn("\x1b[2A\r\x1b[J", out, "redraws the 2-line frame in place")
        screen = ANSI.sub("", out).replace("\r", "")
        lines = [l for l in screen.split("\n") if l]
        self.assertTrue(all(len(l) <= 99 for l in lines), "no line wider than the terminal")
        self.assertIn("deploy-progress-watch: 1 in flight in deployments at ", screen)
        bar = r"deployments 8 \[%s\] "
        self.assertRegex(screen, bar % (r" " * 20) + r"Queued for \d+s")
        self.assertRegex(screen, bar % (r"\." * 20) + r"Transferring: 0/40 \(0\.0%\)")
        self.assertRegex(screen, bar % (r"#" * 10 + r"\." * 10) + r"Transferring: 20/40 \(50\.0%\)")
        self.assertRegex(screen, bar % (r"#" * 20) + r"Transferring: 40/40 \(100\.0%\)")
        self.assertRegex(lines[-1], r"^\[done\] deployments 8 Succeeded in \d+s$")

    def test_stuck_marker_on_a_terminal(self):
        self.stuck_row(11)
        w = Watch("-t", "deployments", "--once", tty=True)
        self.assertEqual(w.wait(), 0, w.stderr)
        self.assertIn("Building for 1h00m  \x1b[1;31mSTUCK (no_heartbeat)\x1b[0m", w.output())

    # -- NOTIFY -------------------------------------------------------------

    def test_refreshes_on_notify_before_the_polling_interval(self):
        self.sql("INSERT INTO deployments (id) VALUES (12)")
        w = Watch("-t", "deployments", "-k", "12", "-i", "60")
        self.assertRegex(w.next_line(), r"Queued for")
        started = time.monotonic()
        self.move(12, "building")
        self.assertRegex(w.next_line(timeout=10), r" deployments 12 Building for \d+s$")
        self.move(12, "succeeded")
        self.assertEqual(w.wait(timeout=10), 0, w.stderr)
        self.assertLess(time.monotonic() - started, 10, "refreshed on NOTIFY, not after 60s")

    def test_listens_on_the_tables_own_channel(self):
        self.sql("INSERT INTO jobs (id) VALUES (3)")
        w = Watch("-t", "jobs", "-k", "3", "-i", "60")
        self.assertRegex(w.next_line(), r"Queued for")
        self.move(3, "building", table="jobs")      # NOTIFY on jobs_events
        self.assertRegex(w.next_line(timeout=10), r" jobs 3 Building for \d+s$")
        self.move(3, "failed", table="jobs")
        self.assertEqual(w.wait(timeout=10), 1, w.stderr)

    def test_listens_on_the_channel_given(self):
        self.sql("INSERT INTO jobs (id) VALUES (2)")
        w = Watch("-t", "jobs", "-k", "2", "-i", "60", "-c", "my_channel")
        self.assertRegex(w.next_line(), r"Queued for")
        self.move(2, "building", table="jobs")
        self.sql("SELECT pg_notify('my_channel', '')")
        self.assertRegex(w.next_line(timeout=10), r" jobs 2 Building for \d+s$")
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.wait(), 4, "interrupted before the row finished")

    def test_reconnects_when_its_connection_is_lost(self):
        self.sql("INSERT INTO deployments (id) VALUES (13)")
        w = Watch("-t", "deployments", "-k", "13", "-i", POLL)
        self.assertRegex(w.next_line(), r"Queued for")
        (killed,) = self.conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'deploy-progress-watch'").fetchone()
        self.assertEqual(killed, 1)
        time.sleep(STEP)
        self.move(13, "succeeded")
        self.assertEqual(w.wait(), 0, w.stderr)
        self.assertIn("deploy-progress-watch: connection lost, reconnecting\n"
                      "deploy-progress-watch: reconnected\n", w.stderr)
        self.assertRegex(w.output(), r" deployments 13 Succeeded\n$")

    # -- errors -------------------------------------------------------------

    def test_errors(self):
        cases = [
            (["-t", "untracked"], "table untracked is not tracked\nHINT:  Track it with SELECT deploy_progress.track('untracked')."),
            (["-t", "nosuch"], 'relation "nosuch" does not exist'),
            (["-t", "deployments", "-k", "404"], "cannot read row 404 of table deployments: ERROR:  table public.deployments has no row with key '404'"),
            (["-k", "1"], "-k/--key needs -t/--table"),
            (["-i", "0"], 'invalid interval "0"'),
            (["--json", "--plain"], "--json and --plain cannot be used together"),
            (["-p", "1"], "connection to server"),
            (["-d", "dp_no_such_database"], 'database "dp_no_such_database" does not exist'),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                rc, out, err = run(*args)
                self.assertEqual(rc, 3, err)
                self.assertEqual(out, "")
                self.assertIn(message, err)

    def test_help_and_version(self):
        rc, out, _ = run("--help")
        self.assertEqual(rc, 0)
        self.assertIn("-k, --key=KEY", out)
        rc, out, _ = run("--version")
        control = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "deploy_progress.control")
        with open(control) as f:
            version = re.search(r"^default_version\s*=\s*'([^']+)'", f.read(), re.M).group(1)
        self.assertEqual((rc, out), (0, "deploy-progress-watch (deploy_progress) %s\n" % version))


if __name__ == "__main__":
    unittest.main()
