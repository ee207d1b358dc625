"""deploy-progress-watch, driven by a simulated deployment.

Each test starts the installed program (DEPLOY_PROGRESS_WATCH) against a
database with the extension, moves rows of a tracked table through their
phases from another connection, and checks what the program printed (plain
lines, JSON objects, or the frame of progress bars: its bytes on a
pseudo-terminal, and what a terminal shows, in tmux panes of several sizes)
and its exit status.

Connects with the PG* environment variables (test/clients/run.sh sets them).
Run: python3 -m unittest -v test_watch
"""

import difflib
import fcntl
import json
import os
import pty
import queue
import re
import shlex
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import threading
import time
import unicodedata
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
             "elapsed_seconds", "overall_progress", "stuck_reason", "reason", "description",
             "label", "message"}


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
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line within %ss; the watch printed: %r" % (timeout, self.output()))
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


# The rows of WatchTest.services() as "deploy-progress-watch -t services"
# shows them at 60, 80 and 200 columns: stuck rows first; the name's column
# as wide as the widest name, at most a third of the width; the status (the
# stuck reason and the time since its clock started, or the time without
# progress) before describe()'s text, which is cut with an ellipsis; widths
# in display columns; no line reaches the last column.
SERVICES = {
    60: ["deploy-progress-watch: 5 in flight in services, 1 stuck, a…",
         "ünïcødé-svc         [###.........] STUCK no_heartbeat 2d00h",
         "api                 [############] Transferring: 100/100 (…",
         "cafe\u0301-svc            [            ] Queued for 2d00h",
         "payments-🚀🚀🚀     [#...........] stalled 2d00h  Transfer…",
         "frontend-日本語-サ… [            ] Building for 2d00h"],
    80: ["deploy-progress-watch: 5 in flight in services, 1 stuck, at HH:MM:SS (start)",
         "ünïcødé-svc              [####............] STUCK no_heartbeat 2d00h  Fetching…",
         "api                      [################] Transferring: 100/100 (100.0%) · 2…",
         "cafe\u0301-svc                 [                ] Queued for 2d00h",
         "payments-🚀🚀🚀          [##..............] stalled 2d00h  Transferring: 10/10…",
         "frontend-日本語-サービス [                ] Building for 2d00h"],
    200: ["deploy-progress-watch: 5 in flight in services, 1 stuck, at HH:MM:SS (start)",
          "ünïcødé-svc              [########......................] STUCK no_heartbeat 2d00h  "
          "Fetching: 1/4 (25.0%) · stalled, no progress for 2d00h",
          "api                      [##############################] "
          "Transferring: 100/100 (100.0%) · 2.1 items/h · ETA 0s",
          "cafe\u0301-svc                 [                              ] Queued for 2d00h",
          "payments-🚀🚀🚀          [###...........................] stalled 2d00h  "
          "Transferring: 10/100 (10.0%) · stalled, no progress for 2d00h",
          "frontend-日本語-サービス [                              ] Building for 2d00h"],
}


def cut(line, columns):
    """An ASCII line cut to a width, as the frame's lines are."""
    return line if len(line) <= columns else line[:columns - 1] + "…"


def bar(percent, columns=16):
    filled = int(percent / 100 * columns + 0.5)
    return "[" + "#" * filled + "." * (columns - filled) + "]"


def width(text):
    """The columns text takes on a terminal (wide characters 2, combining 0)."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


class Pane:
    """The program in a tmux pane of its own (a tmux server of its own),
    columns x lines, in a UTF-8 locale.  before: text printed above it."""

    def __init__(self, *args, columns=80, lines=30, before=None):
        self.columns, self.lines = columns, lines
        self.dir = tempfile.mkdtemp(prefix="dp_watch_tmux.")
        self.socket = os.path.join(self.dir, "socket")
        conf = os.path.join(self.dir, "tmux.conf")
        with open(conf, "w") as f:
            # the pane stays when the program ends; no status line: the pane is the window
            f.write("set -g remain-on-exit on\nset -g status off\nset -g history-limit 1000\n")
        # the shell keeps the program's exit status in a file (tmux's
        # #{pane_dead_status} is seen to stay empty now and then under load)
        self.status_file = os.path.join(self.dir, "status")
        command = "%s; echo $? > %s" % (" ".join(shlex.quote(a) for a in [WATCH, *args]),
                                        shlex.quote(self.status_file))
        if before is not None:
            command = "printf %s " + shlex.quote(before) + "; " + command
        self.tmux("-f", conf, "new-session", "-d", "-x", str(columns), "-y", str(lines), command)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def tmux(self, *args):
        env = dict(os.environ, LC_ALL="C.UTF-8")
        return subprocess.run(["tmux", "-u", "-S", self.socket, *args], env=env, check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def close(self):
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def info(self, fmt):
        return self.tmux("display-message", "-p", "-t", "0", fmt).strip()

    def screen(self, history=False):
        """The pane's lines as shown (after those of its scrollback with
        history=True), without trailing blank lines, the header's clock as
        HH:MM:SS."""
        rows = self.tmux("capture-pane", "-p", "-t", "0", *(["-S", "-"] if history else [])).split("\n")[:-1]
        while rows and rows[-1] == "":
            rows.pop()
        return [re.sub(r" at \d\d:\d\d:\d\d \(", " at HH:MM:SS (", r) for r in rows]

    def history(self):
        """The lines that scrolled off the top of the pane."""
        return int(self.info("#{history_size}"))

    def wait_for(self, condition, what, timeout=30):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s; the pane shows:\n%s"
                                     % (what, "\n".join(self.screen())))
            time.sleep(0.05)

    def wait_for_screen(self, expected, timeout=30):
        try:
            self.wait_for(lambda: self.screen() == expected, "the screen", timeout)
        except AssertionError:
            assert self.screen() == expected, "\n".join(difflib.unified_diff(
                expected, self.screen(), "expected", "shown", lineterm=""))

    def resize(self, columns, lines):
        self.columns, self.lines = columns, lines
        self.tmux("resize-window", "-t", "0", "-x", str(columns), "-y", str(lines))

    def exit_status(self, timeout=30):
        def status():
            with open(self.status_file) as f:
                return f.read()
        self.wait_for(lambda: os.path.exists(self.status_file) and status().endswith("\n"),
                      "the program to end", timeout)
        return int(status())


def run(*args, timeout=30):
    """Run to completion; (exit status, stdout, stderr)."""
    p = subprocess.run([WATCH, *args], capture_output=True, timeout=timeout, text=True)
    return p.returncode, p.stdout, p.stderr


def check_errors(test, cases):
    """Each (arguments, message): exit status 3, nothing on stdout, the message on stderr."""
    for args, message in cases:
        with test.subTest(args=args):
            rc, out, err = run(*args)
            test.assertEqual(rc, 3, err)
            test.assertEqual(out, "")
            test.assertIn(message, err)


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
            CREATE TABLE services (
                name                text PRIMARY KEY,
                phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
                completed_items     bigint,
                total_items         bigint,
                phase_updated_at    timestamptz,
                progress_updated_at timestamptz,
                heartbeat_at        timestamptz,
                started_at          timestamptz,
                finished_at         timestamptz
            );
            SELECT deploy_progress.track('services', heartbeat_deadline => '1 day',
                                         progress_deadline => NULL, queue_deadline => '30 days');
            CREATE TABLE fleet (LIKE services INCLUDING DEFAULTS);
            ALTER TABLE fleet DROP COLUMN name, ADD COLUMN id integer PRIMARY KEY;
            SELECT deploy_progress.track('fleet', heartbeat_deadline => '1 day', progress_deadline => NULL);
        """)

    @classmethod
    def tearDownClass(cls):
        cls.conn.execute("""
            SELECT deploy_progress.untrack('deployments');
            SELECT deploy_progress.untrack('jobs');
            SELECT deploy_progress.untrack('services');
            SELECT deploy_progress.untrack('fleet');
            DROP TABLE deployments, jobs, untracked, services, fleet;
        """)
        cls.conn.close()

    def setUp(self):
        # each test starts from empty tables
        self.conn.execute("DELETE FROM deployments; DELETE FROM jobs; DELETE FROM services; DELETE FROM fleet")

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

    # -- terminal: the frame, as a terminal shows it ---------------------------
    #
    # The program runs in a tmux pane of a given size, and the tests compare
    # the pane's screen (tmux capture-pane: what a user sees, wide characters
    # and all) with the expected lines, exactly, the clock of the header
    # aside.  The rows were last written two days ago (2d00h for an hour),
    # and -i 3600 leaves redrawing to what the tests do (NOTIFY, resize), so
    # each screen is known; the tests wait for it with a generous timeout.

    def services(self):
        """A table with text keys: wide (CJK, emoji), accented and combining
        characters; one row stuck, one stalled, one done counting."""
        self.sql("DELETE FROM services")
        self.sql("SET deploy_progress.stamping = off")
        self.sql("""INSERT INTO services (name, phase, completed_items, total_items, phase_updated_at,
                                          progress_updated_at, heartbeat_at, started_at)
                    SELECT v.name, v.phase::deploy_progress.phase, v.completed, v.total, t, t,
                           CASE WHEN v.silent THEN t ELSE now() END, t
                      FROM (SELECT now() - interval '2 days' AS t) x,
                           (VALUES ('api', 'transferring', 100, 100, false),
                                   ('frontend-日本語-サービス', 'building', NULL, NULL, false),
                                   ('payments-🚀🚀🚀', 'transferring', 10, 100, false),
                                   ('ünïcødé-svc', 'fetching', 1, 4, true),
                                   (E'cafe\u0301-svc', 'queued', NULL, NULL, false))
                           AS v(name, phase, completed, total, silent)""")
        self.sql("RESET deploy_progress.stamping")

    def fleet(self, n, stuck=()):
        """n rows of fleet building for two days, those in stuck silent."""
        self.sql("DELETE FROM fleet")
        self.sql("SET deploy_progress.stamping = off")
        self.sql("""INSERT INTO fleet (id, phase, completed_items, total_items, phase_updated_at,
                                       progress_updated_at, heartbeat_at, started_at)
                    SELECT i, 'building', i, 100, t, t, CASE WHEN i = ANY (%s) THEN t ELSE now() END, t
                      FROM generate_series(1, %s) i, (SELECT now() - interval '2 days' AS t) x""",
                 list(stuck), n)
        self.sql("RESET deploy_progress.stamping")

    def assertScreen(self, pane, expected):
        """The pane shows the expected lines and nothing else (waits for it)."""
        pane.wait_for_screen(expected)
        for line in expected:
            self.assertLessEqual(width(line), pane.columns - 1, "no line as wide as the terminal: %r" % line)

    def test_frame_at_60_80_and_200_columns(self):
        self.services()
        # the names' column: as wide as the widest name (24), at most a third of the width
        bar_column = {60: 20, 80: 25, 200: 25}
        for columns, lines in SERVICES.items():
            with self.subTest(columns=columns):
                with Pane("-t", "services", "-i", "3600", columns=columns, lines=20) as pane:
                    self.assertScreen(pane, lines)
                    # every bar starts in the same column, whatever the characters before it
                    self.assertEqual({width(l[:l.index("[")]) for l in lines[1:]}, {bar_column[columns]})

    def test_more_rows_than_lines(self):
        self.fleet(45, stuck=range(40, 45))
        row = "%-2d %s stalled 2d00h  Building: %d/100 (%d.0%%) · stalled, no progress for 2d00h"
        stuck = "%d %s STUCK no_heartbeat 2d00h  Building: %d/100 (%d.0%%) · stalled, no progress for 2d00h"

        def frame(trigger, lines, completed={}):
            done = lambda i: completed.get(i, i)
            rows = [cut(stuck % (i, bar(i), i, i), 79) for i in range(40, 45)]
            rows += [cut(row % (i, bar(done(i)), done(i), done(i)), 79) for i in range(1, 40)]
            shown = rows[:lines - 3]
            return (["deploy-progress-watch: 45 in flight in fleet, 5 stuck, at HH:MM:SS (%s)" % trigger]
                    + shown + ["… %d more%s" % (45 - len(shown), "" if len(shown) >= 5 else
                                                 " (%d stuck)" % (5 - len(shown)))])

        with Pane("-t", "fleet", "-i", "3600", columns=80, lines=30) as pane:
            # the header, stuck rows first, as many rows as fit and a line for
            # the others; the cursor's line below stays free
            self.assertScreen(pane, frame("start", 30))
            # redrawn in place: nothing scrolls off the top
            completed = {}
            for i in (1, 2, 3):
                completed[i] = 50 + i
                self.sql("SET deploy_progress.stamping = off")
                self.sql("UPDATE fleet SET completed_items = %s WHERE id = %s", 50 + i, i)
                self.sql("RESET deploy_progress.stamping")
                self.sql("SELECT pg_notify('deploy_progress', '')")
                self.assertScreen(pane, frame("notify", 30, completed))
                self.assertEqual(pane.history(), 0)
            # shorter: the stuck rows stay, then what did not fit is counted
            pane.resize(80, 8)
            self.assertScreen(pane, frame("notify", 8, completed))
            pane.resize(80, 6)
            self.assertScreen(pane, frame("notify", 6, completed))

    def test_redraw_when_the_terminal_is_resized(self):
        self.services()
        with Pane("-t", "services", "-i", "3600", columns=80, lines=20,
                  before="$ deploy-progress-watch -t services\n") as pane:
            self.assertScreen(pane, ["$ deploy-progress-watch -t services"] + SERVICES[80])
            # wider: redrawn over the frame, the line above it intact
            pane.resize(200, 20)
            self.assertScreen(pane, ["$ deploy-progress-watch -t services"] + SERVICES[200])
            self.assertEqual(pane.history(), 0)
            # narrower: tmux rewraps the 200-column lines (what no longer fits
            # above the cursor goes to the scrollback); the frame is drawn over
            # all of them, no fragment left
            pane.resize(60, 20)
            self.assertScreen(pane, SERVICES[60])
            pane.resize(80, 20)
            self.assertScreen(pane, SERVICES[80])

    def test_finished_rows_scroll_above_the_frame(self):
        self.fleet(3)
        row = lambda i: cut("%d %s stalled 2d00h  Building: %d/100 (%d.0%%) · stalled, no progress for 2d00h"
                            % (i, bar(i), i, i), 79)
        with Pane("-t", "fleet", "-i", "3600", columns=80, lines=10) as pane:
            self.assertScreen(pane, ["deploy-progress-watch: 3 in flight in fleet at HH:MM:SS (start)",
                                     row(1), row(2), row(3)])
            self.sql("UPDATE fleet SET phase = 'succeeded' WHERE id = 2")
            self.assertScreen(pane, ["[done] fleet 2 Succeeded in 2d00h",
                                     "deploy-progress-watch: 2 in flight in fleet at HH:MM:SS (notify)",
                                     row(1), row(3)])
            self.sql("UPDATE fleet SET phase = 'failed' WHERE id = 3")
            self.assertScreen(pane, ["[done] fleet 2 Succeeded in 2d00h",
                                     "[FAIL] fleet 3 Failed after 2d00h",
                                     "deploy-progress-watch: 1 in flight in fleet at HH:MM:SS (notify)",
                                     row(1)])

        # -k: the row's frame, then how it ended, and the exit status
        with Pane("-t", "fleet", "-k", "1", "-i", "3600", columns=80, lines=10) as pane:
            self.assertScreen(pane, ["deploy-progress-watch: 1 in flight in fleet at HH:MM:SS (start)",
                                     row(1)])
            self.sql("UPDATE fleet SET phase = 'succeeded' WHERE id = 1")
            self.assertEqual(pane.exit_status(), 0)
            # all the program left (tmux adds its "Pane is dead" line; it
            # may learn of the exit before it has shown the last output)
            left = lambda: [l for l in pane.screen(history=True) if l and not l.startswith("Pane is dead")]
            try:
                pane.wait_for(lambda: left() == ["[done] fleet 1 Succeeded in 2d00h"], "the [done] line alone")
            except AssertionError:
                self.assertEqual(left(), ["[done] fleet 1 Succeeded in 2d00h"])

    def test_messages_above_the_frame(self):
        # messages on stderr (here: a lost connection) go above the frame,
        # which is drawn again below them, whole
        self.fleet(2)
        row = lambda i: cut("%d %s stalled 2d00h  Building: %d/100 (%d.0%%) · stalled, no progress for 2d00h"
                            % (i, bar(i), i, i), 79)
        with Pane("-t", "fleet", "-i", "3600", columns=80, lines=12) as pane:
            self.assertScreen(pane, ["deploy-progress-watch: 2 in flight in fleet at HH:MM:SS (start)",
                                     row(1), row(2)])
            (killed,) = self.conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'deploy-progress-watch'").fetchone()
            self.assertEqual(killed, 1)
            # (the server's message is not the frame's: it wraps at the width)
            pane.wait_for_screen(["deploy-progress-watch: FATAL:  terminating connection due to administrator comma",
                                     "nd",
                                     "deploy-progress-watch: connection lost, reconnecting",
                                     "deploy-progress-watch: reconnected",
                                     "deploy-progress-watch: 2 in flight in fleet at HH:MM:SS (poll)",
                                     row(1), row(2)])
            self.assertEqual(pane.history(), 0)

    def test_escape_sequences_on_a_terminal(self):
        # what the program writes: the cursor hidden while it draws, a bold
        # header, the stuck status in bold red, the stalled one in yellow,
        # every line cleared to its end, the screen below the frame cleared
        self.fleet(2, stuck=[2])
        w = Watch("-t", "fleet", "--once", tty=True, columns=120)
        self.assertEqual(w.wait(), 0, w.stderr)
        out = re.sub(r" at \d\d:\d\d:\d\d \(", " at HH:MM:SS (", w.output())
        self.assertEqual(out.replace("\r\n", "\n"),
                         "\x1b[?25l"
                         "\x1b[1mdeploy-progress-watch: 2 in flight in fleet, 1 stuck, at HH:MM:SS (start)\x1b[0m\x1b[K\n"
                         "2 [........................] \x1b[1;31mSTUCK no_heartbeat 2d00h\x1b[0m  "
                         "Building: 2/100 (2.0%) · stalled, no progress for 2d00h\x1b[K\n"
                         "1 [........................] \x1b[33mstalled 2d00h\x1b[0m  "
                         "Building: 1/100 (1.0%) · stalled, no progress for 2d00h\x1b[K\n"
                         "\x1b[J\x1b[?25h")

    def test_label_as_the_first_column(self):
        # Where in_flight has a label column (the label role), the frame
        # shows a row's label instead of its key (the key when the row has
        # none).  Until that role is in the extension, a database of its own
        # gets a stand-in: in_flight with a label column read from the
        # table's own "name" column.
        self.sql("DROP DATABASE IF EXISTS dp_client_watch_label")
        self.sql("CREATE DATABASE dp_client_watch_label")
        try:
            with psycopg.connect(dbname="dp_client_watch_label", autocommit=True) as conn:
                conn.execute("""
                    CREATE EXTENSION deploy_progress;
                    CREATE TABLE apps (
                        id integer PRIMARY KEY, name text, phase deploy_progress.phase NOT NULL,
                        phase_updated_at timestamptz, progress_updated_at timestamptz,
                        heartbeat_at timestamptz, started_at timestamptz);
                    SELECT deploy_progress.track('apps', heartbeat_deadline => '1 day', progress_deadline => NULL);
                    SET deploy_progress.stamping = off;
                    INSERT INTO apps SELECT id, name, 'building', t, t, now(), t
                      FROM (SELECT now() - interval '2 days' AS t) x,
                           (VALUES (1, 'web-frontend'), (2, NULL), (3, '検索-api')) v(id, name);
                    ALTER EXTENSION deploy_progress DROP VIEW deploy_progress.in_flight;
                    DROP VIEW deploy_progress.in_flight;
                    ALTER EXTENSION deploy_progress DROP FUNCTION deploy_progress.in_flight(regclass, timestamptz);
                    ALTER FUNCTION deploy_progress.in_flight(regclass, timestamptz) RENAME TO in_flight_without_label;
                    CREATE FUNCTION deploy_progress.in_flight(tbl regclass DEFAULT NULL, as_of timestamptz DEFAULT now())
                    RETURNS TABLE (relid regclass, key text, label text, phase text, kind text,
                                   completed bigint, total bigint, percent double precision,
                                   average_speed double precision, smoothed_speed double precision,
                                   speed double precision, eta interval, phase_updated_at timestamptz,
                                   progress_updated_at timestamptz, heartbeat_at timestamptz,
                                   started_at timestamptz, in_phase interval, elapsed interval,
                                   overall_progress double precision, stuck_reason text)
                    LANGUAGE sql STABLE AS $$
                        SELECT i.relid, i.key, a.name, i.phase, i.kind, i.completed, i.total, i.percent,
                               i.average_speed, i.smoothed_speed, i.speed, i.eta, i.phase_updated_at,
                               i.progress_updated_at, i.heartbeat_at, i.started_at, i.in_phase, i.elapsed,
                               i.overall_progress, i.stuck_reason
                          FROM deploy_progress.in_flight_without_label(tbl, as_of) i
                          LEFT JOIN public.apps a ON i.relid = 'public.apps'::regclass AND a.id::text = i.key
                    $$;
                """)
            # one table: its name once, in the header
            with Pane("-d", "dp_client_watch_label", "-t", "apps", "-i", "3600", columns=80, lines=10) as pane:
                self.assertScreen(pane, ["deploy-progress-watch: 3 in flight in apps at HH:MM:SS (start)",
                                         "web-frontend [                ] Building for 2d00h",
                                         "2            [                ] Building for 2d00h",
                                         "検索-api     [                ] Building for 2d00h"])
            # every table: the table's name before each label
            with Pane("-d", "dp_client_watch_label", "-i", "3600", columns=80, lines=10) as pane:
                self.assertScreen(pane, ["deploy-progress-watch: 3 in flight at HH:MM:SS (start)",
                                         "apps web-frontend [                ] Building for 2d00h",
                                         "apps 2            [                ] Building for 2d00h",
                                         "apps 検索-api     [                ] Building for 2d00h"])
        finally:
            self.sql("DROP DATABASE dp_client_watch_label")

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

    def test_notify_that_arrives_while_a_refresh_runs(self):
        # A NOTIFY that arrives while the program reads the view comes in
        # with the query's results: libpq has read it off the socket, and
        # the program must take it from there rather than wait on the
        # socket until the next poll (an hour here).
        self.sql("INSERT INTO deployments (id) VALUES (16)")
        with psycopg.connect() as locker:       # a transaction of its own
            locker.execute("LOCK TABLE deployments IN ACCESS EXCLUSIVE MODE")
            w = Watch("-t", "deployments", "-k", "16", "-i", "3600")
            # its first refresh waits for the lock, with its snapshot taken
            deadline = time.monotonic() + 30
            while self.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                                    " 'deploy-progress-watch' AND wait_event_type = 'Lock'").fetchone()[0] == 0:
                self.assertLess(time.monotonic(), deadline, "the watch never waited for the lock")
                time.sleep(0.05)
            # the transition commits (and notifies) while the refresh waits
            locker.execute("UPDATE deployments SET phase = 'building' WHERE id = 16")
            locker.commit()
        self.assertRegex(w.next_line(timeout=30), r" deployments 16 Queued for \d+s$")
        self.assertRegex(w.next_line(timeout=30), r" deployments 16 Building for \d+s$")
        self.move(16, "succeeded")
        self.assertEqual(w.wait(), 0, w.stderr)

    def test_refreshes_on_a_bulk_summary_event(self):
        # A statement that moves more rows than deploy_progress.
        # notify_bulk_threshold (100 by default) sends one summary event
        # without a "key": the watch re-reads the rows it shows on any
        # event, so it shows every row's new phase at once, not after the
        # polling interval (an hour here).
        n = 150
        self.sql("INSERT INTO deployments (id) SELECT g FROM generate_series(101, 100 + %s) g" % n)
        with psycopg.connect(autocommit=True) as listener:
            listener.execute("LISTEN deploy_progress")
            w = Watch("-t", "deployments", "-i", "3600")
            for _ in range(n):
                self.assertRegex(w.next_line(), r" deployments \d+ Queued for ")
            started = time.monotonic()
            self.sql("UPDATE deployments SET phase = 'building' WHERE id > 100")
            moved = set()
            while len(moved) < n:
                m = re.search(r" deployments (\d+) Building for \d+s$", w.next_line(timeout=30))
                self.assertTrue(m, w.output())
                moved.add(int(m.group(1)))
            self.assertEqual(moved, set(range(101, 101 + n)))
            self.assertLess(time.monotonic() - started, 30, "refreshed on the summary, not after an hour")
            # what it woke up on: one summary of the statement (a sentinel
            # sent after it marks the end: notifications come in commit order)
            self.sql("NOTIFY deploy_progress, 'sentinel'")
            events = []
            for e in listener.notifies():
                if e.payload == "sentinel":
                    break
                events.append(json.loads(e.payload))
        self.assertEqual(len(events), 1, events)
        self.assertEqual({k: events[0][k] for k in ("table", "to", "kind", "count", "bulk")},
                         {"table": "public.deployments", "to": "building", "kind": "active",
                          "count": n, "bulk": True})
        self.assertNotIn("key", events[0])
        w.proc.send_signal(signal.SIGINT)
        self.assertEqual(w.wait(), 0, w.stderr)

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
        check_errors(self, cases)

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
