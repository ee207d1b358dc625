"""deploy-progress-watch --webhook / --exec: the event relay.

A local HTTP receiver (127.0.0.1, a free port) fails the first attempts
(a 500, then a connection closed without an answer) and then accepts;
rows move through their phases while the relay runs; every event must
arrive once, in the stream's order, with the fields of events_since().
The relay is then killed with SIGKILL, more rows move, and a relay
started again with the same state file delivers only the new events.
An --exec relay whose command fails once delivers each event once too;
bad options are refused with exit status 3 and change nothing.

Waits are bounded polls on a condition, never sleeps that assert timing.
Connects with the PG* environment variables (test/clients/run.sh sets them).
Run: python3 -m unittest -v test_relay
"""

import datetime
import http.server
import json
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import psycopg

from test_watch import WATCH, check_errors, db, run

# fast polling and retries, so that the tests do not wait for long
FAST = ["-i", "0.2", "--retry-delay", "0.2", "--retry-max-delay", "1"]
FIELDS = ["cursor", "table", "key", "label", "from", "to", "kind", "at", "completed", "total",
          "percent", "reason", "message"]


def wait_for(condition, what, timeout=30):
    """Poll condition() until it is true, at most timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within %ss: %s" % (timeout, what))
        time.sleep(0.05)


def read(path):
    with open(path) as f:
        return f.read()


class Receiver:
    """An HTTP endpoint that answers the POSTs it gets as `failures` says
    (an HTTP status; "drop": close the connection without an answer;
    "hang": no answer until the receiver is closed), and with 200 once
    they are used up.  Keeps every attempt and every
    accepted event."""

    def __init__(self, failures=()):
        self.failures = list(failures)
        self.attempts = []      # (Idempotency-Key, what was answered)
        self.received = []      # (headers, event) of the accepted POSTs
        self.lock = threading.Lock()
        self.released = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive: the relay reuses its connection

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    answer = receiver.failures.pop(0) if receiver.failures else 200
                    receiver.attempts.append((self.headers["Idempotency-Key"], answer))
                    if answer == 200:
                        receiver.received.append((dict(self.headers), json.loads(body, object_pairs_hook=list)))
                if answer == "hang":
                    receiver.released.wait(120)
                if answer in ("drop", "hang"):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                if answer != 200:
                    # a failure closes the connection, so that the next attempt opens a new one
                    # (libcurl itself tries again a kept-alive connection that died unused)
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hooks/deployments" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self):
        with self.lock:
            return [dict(pairs) for _, pairs in self.received]

    def keys(self):
        with self.lock:
            return [headers["Idempotency-Key"] for headers, _ in self.received]

    def wait_for_events(self, n, timeout=30):
        wait_for(lambda: len(self.events()) >= n, "%d events received (got %d)" % (n, len(self.events())), timeout)
        return self.events()

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class Relay:
    """deploy-progress-watch as a relay, in the background; its stderr in a file."""

    def __init__(self, *args):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([WATCH, *FAST, *args], stdout=subprocess.PIPE, stderr=self.err)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.stdout = self.proc.stdout.read().decode()
        self.proc.stdout.close()
        return rc

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode()

    def close(self):
        if self.proc.poll() is None:
            self.stop(signal.SIGKILL)
        self.err.close()


class RelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = db()
        for table in ("relay_hooks", "relay_exec"):
            cls.conn.execute("""
                CREATE TABLE %s (
                    id                  integer PRIMARY KEY,
                    phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
                    completed_items     bigint,
                    total_items         bigint,
                    failure_reason      text
                )""" % table)
            cls.conn.execute("SELECT deploy_progress.track(%s)", (table,))

    @classmethod
    def tearDownClass(cls):
        for table in ("relay_hooks", "relay_exec"):
            cls.conn.execute("SELECT deploy_progress.untrack(%s)", (table,))
            cls.conn.execute("DROP TABLE %s" % table)
        cls.conn.close()

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.state = os.path.join(self.dir.name, "relay.state")

    def tearDown(self):
        self.dir.cleanup()

    def sql(self, query, *params):
        self.conn.execute(query, params)

    def deploy(self, table, id, end="succeeded", reason=None):
        """A row through its phases, one transaction per step as a worker does."""
        self.sql("INSERT INTO %s (id) VALUES (%%s)" % table, id)
        self.sql("UPDATE %s SET phase = 'transferring', completed_items = 0, total_items = 40 WHERE id = %%s" % table, id)
        self.sql("UPDATE %s SET completed_items = 20 WHERE id = %%s" % table, id)    # no event: same phase
        self.sql("UPDATE %s SET completed_items = 40 WHERE id = %%s" % table, id)
        self.sql("UPDATE %s SET phase = %%s, failure_reason = %%s WHERE id = %%s" % table, end, reason, id)

    def expected(self, table, after, n, conn=None, name=None):
        """The n events after a cursor as the relay must send them, from events_since()
        itself (label and message where the installed version has them).  It waits
        for all n: the stream holds an event back while an older transaction runs."""
        def rows():
            r = (conn or self.conn).execute(
                "SELECT to_jsonb(e), e.at FROM deploy_progress.events_since(%s, 1000, %s::regclass) e",
                (after, table)).fetchall()
            return r if len(r) >= n else None
        rows = wait_for(rows, "%d events in the stream" % n)
        self.assertEqual(len(rows), n)
        return [{"cursor": j["cursor"], "table": name or "public." + table, "key": j["key"], "label": j.get("label"),
                 "from": j["from_phase"], "to": j["to_phase"], "kind": j["to_kind"], "at": at,
                 "completed": j["completed"], "total": j["total"], "percent": j["percent"],
                 "reason": j["reason"], "message": j.get("message")} for j, at in rows]

    def assertEvents(self, got, expected):
        self.assertEqual([e["cursor"] for e in got], [e["cursor"] for e in expected])
        for g, e in zip(got, expected):
            self.assertEqual(list(g), FIELDS)
            at = datetime.datetime.fromisoformat(g["at"].replace("Z", "+00:00"))
            self.assertRegex(g["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertEqual(dict(g, at=at), e)

    def wait_for_state(self, cursor=None):
        """The state file holds cursor (or, without one, exists): the relay is running."""
        wait_for(lambda: os.path.exists(self.state) and (cursor is None or read(self.state) == cursor + "\n"),
                 "state file with %s" % (cursor or "a cursor"))
        return read(self.state).strip()

    # -- webhook ------------------------------------------------------------

    def test_webhook_delivers_each_event_once_in_order(self):
        receiver = Receiver(failures=[500, "drop"])
        self.addCleanup(receiver.close)
        # an event in the stream before the relay starts: not sent
        self.sql("INSERT INTO relay_hooks (id) VALUES (100)")
        wait_for(lambda: self.conn.execute("SELECT count(*) FROM deploy_progress.events_since(NULL, 1000, 'relay_hooks')"
                                           " WHERE key = '100'").fetchone()[0], "row 100's event in the stream")
        relay = Relay("-t", "relay_hooks", "--webhook", receiver.url, "--state", self.state,
                      "-H", "Authorization: Bearer s3cret")
        self.addCleanup(relay.close)
        start = self.wait_for_state()

        # a second relay cannot take the same state file
        rc, out, err = run("--webhook", receiver.url, "--state", self.state)
        self.assertEqual((rc, out), (3, ""), err)
        self.assertIn("is in use by another relay", err)

        self.deploy("relay_hooks", 1)
        self.deploy("relay_hooks", 2, end="failed", reason='migration "0042" failed\nlock timeout')
        expected = self.expected("relay_hooks", start, 6)   # queued, transferring, the end; twice
        self.assertEvents(receiver.wait_for_events(6), expected)
        self.wait_for_state(expected[-1]["cursor"])

        # the first event was tried three times: 500, no answer, 200; then each once
        first = expected[0]["cursor"]
        with receiver.lock:
            self.assertEqual(receiver.attempts[:3], [(first, 500), (first, "drop"), (first, 200)])
            self.assertEqual([k for k, _ in receiver.attempts[3:]], [e["cursor"] for e in expected[1:]])
            headers = receiver.received[0][0]
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(headers["Authorization"], "Bearer s3cret")
        self.assertRegex(headers["User-Agent"], r"^deploy-progress-watch/")
        self.assertEqual(relay.stop(signal.SIGKILL), -signal.SIGKILL)
        err = relay.stderr()
        self.assertIn("cannot deliver event %s (attempt 1): HTTP status 500; trying again in 0.2s" % first, err)
        self.assertIn("cannot deliver event %s (attempt 2): " % first, err)
        self.assertIn("event %s delivered at attempt 3" % first, err)
        self.assertEqual(relay.stdout, "")

        # killed: what moves meanwhile is delivered after the restart, and nothing twice
        self.deploy("relay_hooks", 3)
        relay = Relay("-t", "relay_hooks", "--webhook", receiver.url, "--state", self.state)
        self.addCleanup(relay.close)
        more = self.expected("relay_hooks", expected[-1]["cursor"], 3)
        self.assertEvents(receiver.wait_for_events(9)[6:], more)
        self.wait_for_state(more[-1]["cursor"])
        self.assertEqual(relay.stop(), 0)
        self.assertEqual(relay.stderr(), "")
        self.assertEqual(receiver.keys(), [e["cursor"] for e in expected + more])
        self.assertNotIn("100", [e["key"] for e in receiver.events()])

    def test_webhook_reconnects_to_the_database(self):
        receiver = Receiver()
        self.addCleanup(receiver.close)
        relay = Relay("-t", "relay_hooks", "--webhook", receiver.url, "--state", self.state)
        self.addCleanup(relay.close)
        start = self.wait_for_state()
        (killed,) = self.conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'deploy-progress-watch'").fetchone()
        self.assertEqual(killed, 1)
        self.deploy("relay_hooks", 10)
        expected = self.expected("relay_hooks", start, 3)
        self.assertEvents(receiver.wait_for_events(3), expected)
        self.wait_for_state(expected[-1]["cursor"])
        self.assertEqual(relay.stop(), 0)
        self.assertIn("connection lost, reconnecting\n", relay.stderr())
        self.assertEqual(receiver.keys(), [e["cursor"] for e in expected])

    def test_a_signal_ends_a_request_that_waits_for_its_answer(self):
        receiver = Receiver(failures=["hang"])
        self.addCleanup(receiver.close)
        args = ["-t", "relay_hooks", "--webhook", receiver.url, "--state", self.state, "--webhook-timeout", "3600"]
        relay = Relay(*args)
        self.addCleanup(relay.close)
        start = self.wait_for_state()
        self.deploy("relay_hooks", 20)
        expected = self.expected("relay_hooks", start, 3)
        wait_for(lambda: receiver.attempts, "the first request")
        # SIGTERM ends the request at once (not after --webhook-timeout): not delivered, not saved
        self.assertEqual(relay.stop(signal.SIGTERM), 0)
        self.assertEqual(relay.stderr(), "")
        self.assertEqual(read(self.state), start + "\n")
        # so the event is posted again after the restart: at least once
        relay = Relay(*args)
        self.addCleanup(relay.close)
        self.assertEvents(receiver.wait_for_events(3), expected)
        self.wait_for_state(expected[-1]["cursor"])
        self.assertEqual(relay.stop(), 0)
        with receiver.lock:
            self.assertEqual(receiver.attempts, [(expected[0]["cursor"], "hang")] + [(e["cursor"], 200) for e in expected])

    def test_label_and_message_where_events_since_has_them(self):
        # The relay reads events_since()'s columns by name: where a version
        # has label and message columns (in any order), the JSON has their
        # values; without them, null (the other tests).  A database of its
        # own gets a stand-in events_since() with both.  The table's name is
        # schema-qualified and quoted as regclass quotes it.
        self.sql("DROP DATABASE IF EXISTS dp_client_relay_label")
        self.sql("CREATE DATABASE dp_client_relay_label")
        self.addCleanup(self.sql, "DROP DATABASE dp_client_relay_label")
        with psycopg.connect(dbname="dp_client_relay_label", autocommit=True) as conn:
            conn.execute("""
                CREATE EXTENSION deploy_progress;
                CREATE SCHEMA ops;
                CREATE TABLE ops."Web Apps" (id integer PRIMARY KEY, name text,
                                             phase deploy_progress.phase NOT NULL DEFAULT 'queued');
                SELECT deploy_progress.track('ops."Web Apps"');
                ALTER EXTENSION deploy_progress DROP FUNCTION deploy_progress.events_since(text, integer, regclass);
                ALTER FUNCTION deploy_progress.events_since(text, integer, regclass) RENAME TO events_since_without_label;
                CREATE FUNCTION deploy_progress.events_since(after text DEFAULT NULL, max_events integer DEFAULT 1000,
                                                             tbl regclass DEFAULT NULL)
                RETURNS TABLE (message text, cursor text, id bigint, relid regclass, key text, label text,
                               from_phase text, to_phase text, to_kind text, at timestamptz, completed bigint,
                               total bigint, percent double precision, reason text)
                LANGUAGE sql STABLE AS $$
                    SELECT 'entered ' || e.to_phase || E' \u2713\n"done"', e.cursor, e.id, e.relid, e.key, a.name,
                           e.from_phase, e.to_phase, e.to_kind, e.at, e.completed, e.total, e.percent, e.reason
                      FROM deploy_progress.events_since_without_label(after, max_events, tbl) e
                      LEFT JOIN ops."Web Apps" a ON a.id::text = e.key
                $$;
                INSERT INTO ops."Web Apps" (id, name) VALUES (1, '検索-api'), (2, NULL);
                UPDATE ops."Web Apps" SET phase = 'succeeded';
            """)
            table = 'ops."Web Apps"'
            expected = self.expected(table, None, 4, conn=conn, name=table)
        self.assertCountEqual([e["label"] for e in expected], ["検索-api", None, "検索-api", None])
        self.assertEqual(expected[-1]["message"], 'entered succeeded \u2713\n"done"')
        out = os.path.join(self.dir.name, "events.jsonl")
        rc, _, err = run(*FAST, "-d", "dp_client_relay_label", "--exec", "cat >> {0}; echo >> {0}".format(shlex.quote(out)),
                         "--state", self.state, "--from-start", "--once")
        self.assertEqual((rc, err), (0, ""))
        self.assertEvents([dict(json.loads(l, object_pairs_hook=list)) for l in read(out).splitlines()], expected)

    # -- exec ---------------------------------------------------------------

    def test_exec_with_a_command_that_fails_once(self):
        out = os.path.join(self.dir.name, "events.jsonl")
        flag = os.path.join(self.dir.name, "failed-once")
        # the first run fails without reading; then each event, its cursor, a newline
        command = ("test -e {flag} || {{ touch {flag}; exit 7; }};"
                   " {{ cat; echo; echo \"$DEPLOY_PROGRESS_CURSOR\"; }} >> {out}").format(
                       flag=shlex.quote(flag), out=shlex.quote(out))
        self.deploy("relay_exec", 1)
        self.deploy("relay_exec", 2, end="cancelled")
        expected = self.expected("relay_exec", None, 6)

        def lines():
            if not os.path.exists(out):
                return [], []
            text = read(out).splitlines()
            return [json.loads(l, object_pairs_hook=list) for l in text[0::2]], text[1::2]

        # --from-start --once: every event of the table, then exit
        rc, stdout, err = run(*FAST, "-t", "relay_exec", "--exec", command, "--state", self.state,
                              "--from-start", "--once")
        self.assertEqual((rc, stdout), (0, ""), err)
        events, cursors = lines()
        self.assertEvents([dict(e) for e in events], expected)
        self.assertEqual(cursors, [e["cursor"] for e in expected])
        self.assertEqual(read(self.state), expected[-1]["cursor"] + "\n")
        self.assertIn("cannot deliver event %s (attempt 1): the command exited with status 7; trying again in 0.2s\n"
                      % expected[0]["cursor"], err)

        # again: nothing new, nothing run; then only the new events
        rc, _, err = run(*FAST, "-t", "relay_exec", "--exec", command, "--state", self.state, "--once")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(len(lines()[0]), 6)
        self.deploy("relay_exec", 3)
        rc, _, err = run(*FAST, "-t", "relay_exec", "--exec", command, "--state", self.state, "--once")
        self.assertEqual((rc, err), (0, ""))
        events, cursors = lines()
        self.assertEvents([dict(e) for e in events], self.expected("relay_exec", None, 9))
        self.assertEqual(len(set(cursors)), 9)

    # -- errors -------------------------------------------------------------

    def test_errors(self):
        corrupt = os.path.join(self.dir.name, "corrupt.state")
        with open(corrupt, "w") as f:
            f.write("12:34\ngarbage\n")
        good = os.path.join(self.dir.name, "good.state")
        cases = [
            (["--webhook", "http://127.0.0.1:9/x"], "--webhook needs --state=FILE\nHINT:  "),
            (["--exec", "cat"], "--exec needs --state=FILE"),
            (["--webhook", "http://127.0.0.1:9/x", "--exec", "cat", "--state", good],
             "--webhook and --exec cannot be used together"),
            (["--webhook", "127.0.0.1:9/x", "--state", good], 'invalid webhook URL "127.0.0.1:9/x"'),
            (["--webhook", "example.com/hooks", "--state", good], 'invalid webhook URL "example.com/hooks"'),
            (["--webhook", "ftp://example.com/hooks", "--state", good],
             'invalid webhook URL "ftp://example.com/hooks": the scheme is not http or https'),
            (["--exec", "cat", "--state", corrupt], 'state file "%s" is corrupt' % corrupt),
            (["--exec", "cat", "--state", self.dir.name], 'state file "%s" is not a regular file' % self.dir.name),
            (["--exec", "cat", "--state", os.path.join(self.dir.name, "no", "such.state")],
             'cannot write state file "%s": directory "%s": No such file or directory'
             % (os.path.join(self.dir.name, "no", "such.state"), os.path.join(self.dir.name, "no"))),
            (["--exec", "cat", "--state", os.path.join(corrupt, "x")],
             'cannot read state file "%s": Not a directory' % os.path.join(corrupt, "x")),
            (["--state", good], "--state needs --webhook or --exec"),
            (["--from-start"], "--from-start needs --webhook or --exec"),
            (["--exec", "", "--state", good], "--exec needs a command"),
            (["--exec", "cat", "--state", good, "-H", "X-A: b"], "-H/--header needs --webhook"),
            (["--webhook", "http://127.0.0.1:9/x", "--state", good, "-H", "no colon"], 'invalid header "no colon"'),
            (["--exec", "cat", "--state", good, "--retry-delay", "0"], 'invalid retry delay "0"'),
            (["--exec", "cat", "--state", good, "--retry-delay", "5", "--retry-max-delay", "2"],
             "--retry-delay (5s) is longer than --retry-max-delay (2s)"),
            (["--exec", "cat", "--state", good, "-t", "relay_exec", "-k", "1"],
             "-k/--key cannot be used with --webhook or --exec"),
            (["--exec", "cat", "--state", good, "--json"], "--json cannot be used with --webhook or --exec"),
        ]
        if os.geteuid() != 0:   # root may read and write anywhere
            ro = os.path.join(self.dir.name, "ro")
            os.mkdir(ro, 0o500)
            cases.append((["--exec", "cat", "--state", os.path.join(ro, "s")],
                          'cannot write state file "%s": directory "%s": Permission denied' % (os.path.join(ro, "s"), ro)))
            unreadable = os.path.join(ro, "unreadable.state")
            os.chmod(ro, 0o700)
            with open(unreadable, "w") as f:
                f.write("12:34\n")
            os.chmod(unreadable, 0)
            os.chmod(ro, 0o500)
            cases.append((["--exec", "cat", "--state", unreadable],
                          'cannot read state file "%s": Permission denied' % unreadable))
        check_errors(self, cases)
        # and nothing changed
        self.assertEqual(sorted(os.listdir(self.dir.name)), ["corrupt.state"] + (["ro"] if os.geteuid() != 0 else []))
        self.assertEqual(read(corrupt), "12:34\ngarbage\n")
        if os.geteuid() != 0:
            os.chmod(ro, 0o700)     # so that the directory can be removed
            self.assertEqual(os.listdir(ro), ["unreadable.state"])


if __name__ == "__main__":
    unittest.main()
