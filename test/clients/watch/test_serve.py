"""deploy-progress-watch --serve: the live web page.

Each test starts the installed program (DEPLOY_PROGRESS_WATCH) with
--serve on 127.0.0.1 and a free port (port 0: the program prints its URL),
moves rows of a tracked table from another connection, and checks the HTTP
endpoints (the page, /api/rows, /api/steps, the /events stream, 401, 404,
405), the option checks, what a role without rights sees, the shutdown on
SIGTERM, and, end to end in headless Chromium driven by Selenium
(chromium-driver, python3-selenium), that the page's DOM follows a worker's
moves.  The browser test saves a screenshot to $DP_TEST_OUTPUT_DIR
(default: test/clients/watch/output/serve.png); with DP_SERVE_SCREENSHOT=path
it also writes the README's picture there (docs/serve.png).

No timing assertions: waits are bounded polls.
Connects with the PG* environment variables (test/clients/run.sh sets them).
Run: python3 -m unittest -v test_serve
"""

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

import psycopg

WATCH = os.environ.get("DEPLOY_PROGRESS_WATCH", "deploy-progress-watch")
HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT_DIR = os.environ.get("DP_TEST_OUTPUT_DIR", os.path.join(HERE, "output"))
URL = re.compile(r"serving (http://\S+/)")


def db():
    return psycopg.connect(autocommit=True)


def until(check, timeout=30, what="the condition"):
    """Poll check() until it returns a true value (bounded: timeout seconds)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:      # noqa: BLE001 - retried until the deadline
            last = e
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError("waited %ss for %s; last: %r" % (timeout, what, last))


def http_get(url, headers=None):
    """(status, headers, body) of a GET."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


class Server:
    """deploy-progress-watch --serve running in the background."""

    def __init__(self, *args, listen="127.0.0.1:0", env=None):
        self.proc = subprocess.Popen([WATCH, "--serve", listen, *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = URL.search(line)
        if not m:
            self.proc.kill()
            raise AssertionError("no URL printed: %r %r" % (line, self.proc.stderr.read()))
        self.url = m.group(1)

    def get(self, path, headers=None):
        return http_get(self.url + path.lstrip("/"), headers)

    def json(self, path, headers=None):
        status, _, body = self.get(path, headers)
        return status, json.loads(body)

    def stop(self):
        if self.proc.stdout.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc


class Stream:
    """The /events stream of a server, its snapshots read as they come."""

    def __init__(self, server, query=""):
        self.resp = urllib.request.urlopen(server.url + "events" + query, timeout=60)
        self.snapshots = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    self.snapshots.append(json.loads(line[6:]))
        except (OSError, ValueError, AttributeError):
            pass                # closed by close()

    def row(self, table, key):
        """The row in the latest snapshot, or None."""
        if not self.snapshots:
            return None
        return next((r for r in self.snapshots[-1]["rows"] if r["table"] == table and r["key"] == key), None)

    def close(self):
        self.resp.close()


class ServeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.conn = db()
        cls.conn.execute("""
            SET client_min_messages = warning;
            DROP TABLE IF EXISTS web_deploys;
            DROP ROLE IF EXISTS dp_serve_nobody;
            CREATE ROLE dp_serve_nobody LOGIN;
            CREATE TABLE web_deploys (
                id                  text PRIMARY KEY,
                phase               deploy_progress.phase NOT NULL DEFAULT 'queued',
                completed_items     bigint,
                total_items         bigint,
                phase_updated_at    timestamptz,
                progress_updated_at timestamptz,
                heartbeat_at        timestamptz,
                started_at          timestamptz,
                finished_at         timestamptz,
                failure_reason      text,
                label               text,
                message             text
            );
            SELECT deploy_progress.track('web_deploys', notify_channel => 'web_deploys_events');
        """)

    @classmethod
    def tearDownClass(cls):
        cls.conn.execute("""
            SELECT deploy_progress.untrack('web_deploys');
            DROP TABLE web_deploys;
            DROP ROLE dp_serve_nobody;
        """)
        cls.conn.close()

    def setUp(self):
        self.conn.execute("DELETE FROM web_deploys")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()

    def serve(self, *args, **kw):
        s = Server(*args, **kw)
        self.servers.append(s)
        return s

    def sql(self, query, *params):
        self.conn.execute(query, params)

    def move(self, key, phase, **counters):
        sets = ", ".join(["phase = %s"] + ["%s = %%s" % c for c in counters])
        self.sql("UPDATE web_deploys SET %s WHERE id = %%s" % sets, phase, *counters.values(), key)

    def stuck_row(self, key, phase="building"):
        """A row whose worker went silent an hour ago."""
        self.sql("SET deploy_progress.stamping = off")
        self.sql("INSERT INTO web_deploys (id, phase, phase_updated_at, progress_updated_at, heartbeat_at,"
                 " started_at) SELECT %s, %s, t, t, t, t FROM (SELECT now() - interval '1 hour' AS t) x",
                 key, phase)
        self.sql("RESET deploy_progress.stamping")

    # -- options --------------------------------------------------------------

    def run_watch(self, *args):
        p = subprocess.run([WATCH, *args], capture_output=True, text=True, timeout=30)
        return p.returncode, p.stderr

    def test_options_are_checked(self):
        for args, message in [
                (["--serve", "0.0.0.0:0"], "serving on 0.0.0.0, which is not a loopback address, "
                                           "needs --token or --basic-auth"),
                (["--serve", "[::]:0"], "needs --token or --basic-auth"),
                (["--serve", "80a"], 'invalid --serve port "80a"'),
                (["--serve", "127.0.0.1:70000"], 'invalid --serve port "70000"'),
                (["--serve", "::1:8080"], "write an IPv6 address in brackets"),
                (["--serve", "0", "--basic-auth", "nopassword"], "invalid --basic-auth"),
                (["--serve", "0", "--token", ""], "--token cannot be empty"),
                (["--token", "t"], "--token needs --serve"),
                (["--serve", "0", "-t", "web_deploys", "-k", "1"], "-k/--key cannot be used with --serve"),
                (["--serve", "0", "--once"], "--once cannot be used with --serve"),
                (["--serve", "0", "--exec", "cat", "--state", "/nonexistent/state"],
                 "--serve cannot be used with --webhook or --exec")]:
            with self.subTest(args=args):
                rc, err = self.run_watch(*args)
                self.assertEqual(rc, 3, err)
                self.assertIn(message, err)
        rc, err = self.run_watch("--serve", "0", "-t", "pg_class")
        self.assertEqual(rc, 3)
        self.assertIn("table pg_class is not tracked", err)

    def test_help_names_the_options(self):
        out = subprocess.run([WATCH, "--help"], capture_output=True, text=True).stdout
        for option in ("--serve=[ADDR:]PORT", "--token=TOKEN", "--basic-auth=USER:PASSWORD"):
            self.assertIn(option, out)

    def test_non_loopback_address_with_a_token(self):
        s = self.serve("--token", "t0ken", listen="0.0.0.0:0")
        self.assertTrue(s.url.startswith("http://0.0.0.0:"), s.url)
        port = s.url.rsplit(":", 1)[1].rstrip("/")
        self.assertEqual(http_get("http://127.0.0.1:%s/api/rows" % port)[0], 401)
        self.assertEqual(http_get("http://127.0.0.1:%s/api/rows?token=t0ken" % port)[0], 200)

    # -- endpoints ------------------------------------------------------------

    def test_endpoints(self):
        self.sql("INSERT INTO web_deploys (id, label) VALUES ('a', 'API servers'), ('b', NULL)")
        self.move("a", "transferring", completed_items=25, total_items=100, message="copying image api:1.2")
        self.stuck_row("z")
        s = self.serve("-t", "web_deploys", "-i", "0.2")

        status, headers, body = s.get("/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        self.assertIn("default-src 'none'", headers["Content-Security-Policy"])
        self.assertEqual(headers["Cache-Control"], "no-store")
        self.assertIn("<title>deploy_progress</title>", body)
        # self-contained: no external scripts, styles, images or fonts
        self.assertNotRegex(body, r"""(src|href)\s*=\s*["']?(https?:)?//""")
        self.assertNotIn("<link", body)
        self.assertNotIn("innerHTML", body)

        status, snap = s.json("/api/rows")
        self.assertEqual(status, 200)
        self.assertIsNone(snap["error"])
        rows = snap["rows"]
        # stuck rows first, then by key
        self.assertEqual([r["key"] for r in rows], ["z", "a", "b"])
        self.assertEqual(rows[0]["stuck_reason"], "no_heartbeat")
        self.assertGreater(rows[0]["stuck_for"], 3000)
        a = rows[1]
        self.assertEqual((a["table"], a["label"], a["message"], a["phase"], a["kind"], a["completed"], a["total"],
                          a["percent"]),
                         ("web_deploys", "API servers", "copying image api:1.2", "transferring", "active", 25, 100, 25))
        self.assertIsNone(rows[2]["label"])
        self.assertIsNone(a["stuck_reason"])
        self.assertIn("Transferring: 25/100 (25.0%)", a["description"])
        self.assertIn("copying image api:1.2", a["description"])
        for key in ("speed", "eta_seconds", "phase_elapsed_seconds", "overall_progress", "stalled_for"):
            self.assertIn(key, a)
        # recent transitions, newest first
        moves = [(e["key"], e["label"], e["from"], e["to"]) for e in snap["events"]]
        self.assertEqual(moves[0], ("a", "API servers", "queued", "transferring"))
        self.assertIn(("b", None, None, "queued"), moves)
        self.assertEqual((snap["events"][0]["percent"], snap["events"][0]["message"]), (25, "copying image api:1.2"))

        status, steps = s.json("/api/steps?table=web_deploys&key=a")
        self.assertEqual(status, 200)
        status_of = {st["phase"]: st["status"] for st in steps}
        self.assertEqual(status_of["queued"], "completed")
        self.assertEqual(status_of["transferring"], "active")
        self.assertEqual(status_of["health_check"], "pending")
        active = next(st for st in steps if st["status"] == "active")
        self.assertIsNotNone(active["started_at"])
        self.assertIsNone(active["ended_at"])
        self.assertGreaterEqual(active["duration_seconds"], 0)

        for path, code, error in [("/api/steps?table=web_deploys&key=nope", 404, "no such row"),
                                  ("/api/steps?table=no_such_table&key=a", 404, 'relation "no_such_table" does not exist'),
                                  ("/api/steps?table=pg_class&key=a", 400, "table pg_class is not tracked"),
                                  ("/api/steps?key=a", 400, "give the row as ?table=TABLE&key=KEY"),
                                  ("/nothing", 404, "not found"),
                                  ("/api/rows/x", 404, "not found")]:
            with self.subTest(path=path):
                status, body = s.json(path)
                self.assertEqual((status, body), (code, {"error": error}))

        req = urllib.request.Request(s.url + "api/rows", data=b"x", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=20)
        self.assertEqual(cm.exception.code, 405)
        self.assertEqual(cm.exception.headers["Allow"], "GET, HEAD")

    def test_events_stream_pushes_on_notify(self):
        """With a polling interval of an hour, only a NOTIFY can bring the
        new phase before the bounded wait ends."""
        self.sql("INSERT INTO web_deploys (id) VALUES ('n')")
        s = self.serve("-t", "web_deploys", "-i", "3600")
        stream = Stream(s)
        try:
            until(lambda: stream.row("web_deploys", "n"), what="the first snapshot")
            self.assertEqual(stream.row("web_deploys", "n")["phase"], "queued")
            self.move("n", "building")
            until(lambda: (stream.row("web_deploys", "n") or {}).get("phase") == "building",
                  timeout=20, what="the snapshot after a NOTIFY")
            self.assertEqual(stream.snapshots[-1]["events"][0]["to"], "building")
        finally:
            stream.close()

    def test_counter_updates_show_at_the_next_poll(self):
        self.sql("INSERT INTO web_deploys (id, phase, completed_items, total_items) VALUES ('c', 'transferring', 0, 10)")
        s = self.serve("-t", "web_deploys", "-i", "0.2")
        stream = Stream(s)
        try:
            until(lambda: stream.row("web_deploys", "c"), what="the first snapshot")
            self.sql("UPDATE web_deploys SET completed_items = 5 WHERE id = 'c'")     # no NOTIFY
            until(lambda: (stream.row("web_deploys", "c") or {}).get("percent") == 50,
                  what="the counters at a poll")
        finally:
            stream.close()

    def test_concurrent_clients(self):
        """Streams and /api/steps requests at once, from several threads."""
        self.sql("INSERT INTO web_deploys (id) VALUES ('p1'), ('p2')")
        s = self.serve("-t", "web_deploys", "-i", "0.1")
        streams = [Stream(s) for _ in range(6)]
        results = []

        def client(key):
            for _ in range(15):
                results.append(s.json("/api/steps?table=web_deploys&key=" + key)[0])
                results.append(s.get("/api/rows")[0])

        try:
            threads = [threading.Thread(target=client, args=(k,)) for k in ("p1", "p2", "p1", "nope")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            self.assertEqual(sorted(set(results)), [200, 404])
            self.assertEqual(results.count(404), 15)
            self.move("p2", "building")
            for st in streams:
                until(lambda: (st.row("web_deploys", "p2") or {}).get("phase") == "building",
                      what="the new phase on every stream")
        finally:
            for st in streams:
                st.close()

    # -- credentials ----------------------------------------------------------

    def test_token(self):
        s = self.serve("-t", "web_deploys", "--token", "s3cret")
        for path in ("/", "/api/rows", "/events", "/api/steps?table=web_deploys&key=a"):
            with self.subTest(path=path):
                status, headers, body = s.get(path)
                self.assertEqual(status, 401)
                self.assertEqual(headers["WWW-Authenticate"], 'Bearer realm="deploy-progress-watch"')
                self.assertEqual(json.loads(body), {"error": "authentication required"})
        self.assertEqual(s.get("/api/rows", {"Authorization": "Bearer wrong"})[0], 401)
        self.assertEqual(s.get("/api/rows?token=s3cre")[0], 401)
        self.assertEqual(s.get("/api/rows?token=s3cret0")[0], 401)
        self.assertEqual(s.get("/api/rows", {"Authorization": "Bearer s3cret"})[0], 200)
        self.assertEqual(s.get("/?token=s3cret")[0], 200)
        stream = Stream(s, "?token=s3cret")
        try:
            until(lambda: stream.snapshots, what="a snapshot with ?token=")
        finally:
            stream.close()

    def test_credentials_from_the_environment(self):
        env = dict(os.environ, DEPLOY_PROGRESS_WATCH_TOKEN="envtok", DEPLOY_PROGRESS_WATCH_BASIC_AUTH="u:p")
        s = self.serve("-t", "web_deploys", env=env)
        self.assertEqual(s.get("/api/rows")[0], 401)
        self.assertEqual(s.get("/api/rows?token=envtok")[0], 200)
        self.assertEqual(s.get("/api/rows", {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()})[0], 200)
        # the option wins
        s2 = self.serve("-t", "web_deploys", "--token", "opt", env=env)
        self.assertEqual(s2.get("/api/rows?token=envtok")[0], 401)
        self.assertEqual(s2.get("/api/rows?token=opt")[0], 200)
        # and they admit an address that is not loopback
        s3 = self.serve("-t", "web_deploys", listen="0.0.0.0:0", env=env)
        self.assertTrue(s3.url.startswith("http://0.0.0.0:"), s3.url)

    def test_basic_auth(self):
        s = self.serve("-t", "web_deploys", "--basic-auth", "ops:pa:ss")

        def auth(user, password):
            return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}

        status, headers, _ = s.get("/")
        self.assertEqual(status, 401)
        self.assertIn('Basic realm="deploy-progress-watch"', headers["WWW-Authenticate"])
        self.assertEqual(s.get("/", auth("ops", "wrong"))[0], 401)
        self.assertEqual(s.get("/", auth("other", "pa:ss"))[0], 401)
        self.assertEqual(s.get("/", auth("ops", "pa:ss"))[0], 200)
        self.assertEqual(s.get("/api/rows", auth("ops", "pa:ss"))[0], 200)

    # -- rights, read-only ----------------------------------------------------

    def test_rows_the_role_cannot_read_are_not_shown(self):
        self.sql("INSERT INTO web_deploys (id) VALUES ('secret')")
        s = self.serve("-U", "dp_serve_nobody")
        status, snap = s.json("/api/rows")
        self.assertEqual(status, 200)
        self.assertEqual(snap["rows"], [])
        self.assertEqual(snap["events"], [])
        status, body = s.json("/api/steps?table=web_deploys&key=secret")
        self.assertEqual(status, 403)
        self.assertIn("permission denied", body["error"])

    def test_row_level_security_applies(self):
        self.sql("INSERT INTO web_deploys (id) VALUES ('pub-1'), ('hidden-1')")
        self.move("pub-1", "building")
        self.move("hidden-1", "building")
        self.conn.execute("""
            GRANT SELECT ON web_deploys TO dp_serve_nobody;
            ALTER TABLE web_deploys ENABLE ROW LEVEL SECURITY;
            CREATE POLICY serve_pub ON web_deploys FOR SELECT TO dp_serve_nobody USING (id LIKE 'pub-%');
        """)
        try:
            s = self.serve("-U", "dp_serve_nobody", "-t", "web_deploys")
            status, snap = s.json("/api/rows")
            self.assertEqual(status, 200)
            self.assertEqual([r["key"] for r in snap["rows"]], ["pub-1"])
            self.assertEqual({e["key"] for e in snap["events"]}, {"pub-1"})
            self.assertEqual(s.json("/api/steps?table=web_deploys&key=pub-1")[0], 200)
            self.assertEqual(s.json("/api/steps?table=web_deploys&key=hidden-1"), (404, {"error": "no such row"}))
        finally:
            self.conn.execute("""
                DROP POLICY serve_pub ON web_deploys;
                ALTER TABLE web_deploys DISABLE ROW LEVEL SECURITY;
                REVOKE SELECT ON web_deploys FROM dp_serve_nobody;
            """)

    def test_lost_connections_are_reset(self):
        """The server's backends terminated: it reconnects (a snapshot taken
        while it cannot would say so in "error"), LISTENs again, and
        /api/steps resets its connection."""
        self.sql("INSERT INTO web_deploys (id) VALUES ('r')")
        s = self.serve("-t", "web_deploys", "-i", "0.2")
        stream = Stream(s)
        try:
            until(lambda: stream.row("web_deploys", "r"), what="the first snapshot")
            self.assertEqual(s.json("/api/steps?table=web_deploys&key=r")[0], 200)
            self.sql("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                     " WHERE application_name = 'deploy-progress-watch' AND datname = current_database()")
            n = len(stream.snapshots)
            until(lambda: len(stream.snapshots) > n and stream.snapshots[-1]["error"] is None
                  and stream.row("web_deploys", "r"), what="the snapshots after the reconnection")
            self.assertEqual(s.json("/api/steps?table=web_deploys&key=r")[0], 200)
            self.move("r", "building")      # and LISTENs again
            until(lambda: (stream.row("web_deploys", "r") or {}).get("phase") == "building",
                  what="the new phase")
        finally:
            stream.close()
        self.assertEqual(s.stop(), 0)
        self.assertIn("connection lost, reconnecting", s.stderr)
        self.assertIn("reconnected", s.stderr)

    def test_head_requests(self):
        s = self.serve("-t", "web_deploys")
        for path in ("/", "/events", "/api/rows"):
            with self.subTest(path=path):
                req = urllib.request.Request(s.url + path.lstrip("/"), method="HEAD")
                with urllib.request.urlopen(req, timeout=20) as r:
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.read(), b"")

    # -- shutdown ---------------------------------------------------------------

    def test_sigterm_ends_it_with_a_stream_open(self):
        s = self.serve("-t", "web_deploys")
        stream = Stream(s)
        try:
            until(lambda: stream.snapshots, what="a snapshot")
            self.assertEqual(s.stop(), 0)
            self.assertEqual(s.stderr, "")
        finally:
            stream.close()
        s2 = self.serve("-t", "web_deploys")
        s2.proc.send_signal(signal.SIGINT)
        self.assertEqual(s2.proc.wait(timeout=30), 0)

    # -- the page in a browser ---------------------------------------------------

    def test_page_in_headless_chromium(self):
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.options import Options
            from selenium.webdriver.chrome.service import Service
            from selenium.webdriver.common.by import By
        except ImportError:
            self.fail("python3-selenium is needed (test/lib.sh installs it)")

        self.sql("INSERT INTO web_deploys (id, label) VALUES ('web-1', 'web frontend'), ('db-7', NULL),"
                 " ('<img src=x onerror=alert(1)>&amp;', '<b>bold</b> & co')")
        self.move("<img src=x onerror=alert(1)>&amp;", "building")
        self.sql("UPDATE web_deploys SET failure_reason = '<b>lock</b> timeout', phase = 'failed',"
                 " message = '<script>alert(2)</script>' WHERE id = 'db-7'")
        self.sql("INSERT INTO web_deploys (id, phase, completed_items, total_items) VALUES ('db-8', 'migrating', 3, 12)")
        self.stuck_row("cache-3", "starting")
        s = self.serve("-t", "web_deploys", "--token", "tok", "-i", "0.5")

        options = Options()
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,760", "--lang=en-GB"):
            options.add_argument(arg)
        options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                                  options=options)

        # the page redraws at each snapshot: read the DOM in one script each time
        def rows():
            return driver.execute_script("""
                return Array.from(document.querySelectorAll('#rows tr')).map(function (tr) {
                  var r = {key: tr.dataset.key, classes: tr.className};
                  ['label', 'table', 'phase', 'desc', 'percent', 'speed', 'eta', 'status'].forEach(function (c) {
                    r[c] = tr.querySelector('.' + c).textContent;
                  });
                  return r;
                });""")

        def cell(key, cls):
            return next((r[cls] for r in rows() if r["key"] == key), None)

        stop = threading.Event()

        def worker():
            """Moves web-1 through its deployment while the page watches."""
            with db() as c:
                for phase, done in [("fetching", None), ("transferring", 0), ("transferring", 20),
                                    ("transferring", 40)]:
                    if stop.wait(0.7):
                        return
                    c.execute("UPDATE web_deploys SET phase = %s, completed_items = %s,"
                              " total_items = CASE WHEN %s::bigint IS NULL THEN NULL ELSE 80 END"
                              " WHERE id = 'web-1'", (phase, done, done))

        try:
            driver.get(s.url + "?token=tok")
            until(lambda: cell("web-1", "phase") == "queued", timeout=30, what="the page's first rows")
            # stuck first, highlighted
            self.assertEqual(driver.title, "(1 stuck) 4 in flight · deploy_progress")
            first = rows()[0]
            self.assertEqual(first["key"], "cache-3")
            self.assertIn("stuck", first["classes"])
            self.assertTrue(cell("cache-3", "status").startswith("STUCK no_heartbeat"))
            self.assertEqual(cell("db-8", "percent"), "25.0%")
            # text stays text
            self.assertEqual(cell("<img src=x onerror=alert(1)>&amp;", "label"), "<b>bold</b> & co")
            self.assertEqual(cell("web-1", "label"), "web frontend")
            events = driver.find_element(By.ID, "events").text
            self.assertIn("<b>lock</b> timeout", events)
            self.assertIn("<script>alert(2)</script>", events)
            self.assertEqual(driver.find_elements(By.CSS_SELECTOR, "img, #rows b, #events b, main script"), [])

            t = threading.Thread(target=worker, daemon=True)
            t.start()
            until(lambda: cell("web-1", "phase") == "transferring" and cell("web-1", "percent") == "50.0%",
                  timeout=30, what="web-1 transferring at 50.0% on the page")
            t.join(timeout=30)

            # the steps of the selected row, GitHub Actions style
            driver.find_element(By.CSS_SELECTOR, '#rows tr[data-key="web-1"]').click()

            def step_status():
                return driver.execute_script("""
                    var s = {};
                    document.querySelectorAll('#steps li').forEach(function (li) { s[li.dataset.phase] = li.dataset.status; });
                    return s;""")

            until(lambda: step_status().get("transferring") == "active", what="the steps of web-1")
            steps = step_status()
            self.assertEqual((steps["queued"], steps["fetching"], steps["preparing"], steps["health_check"]),
                             ("completed", "completed", "skipped", "pending"))
            self.assertIn("web-1", driver.find_element(By.ID, "steps-title").text)
            # the steps' labels
            self.assertIn("Fetching sources", driver.find_element(By.ID, "steps").text)
            until(lambda: "fetching → transferring" in driver.find_element(By.ID, "events").text,
                  what="the transition in the recent list")
            self.assertEqual(driver.find_element(By.ID, "live-text").text, "live")
            self.assertEqual([e for e in driver.get_log("browser") if e["level"] == "SEVERE"], [])

            os.makedirs(OUTPUT_DIR, exist_ok=True)
            shot = os.path.join(OUTPUT_DIR, "serve.png")
            self.assertTrue(driver.save_screenshot(shot))
            print("\nscreenshot: %s" % shot)
            if os.environ.get("DP_SERVE_SCREENSHOT"):
                # the README's picture, without the test's hostile key
                self.sql("DELETE FROM web_deploys WHERE id LIKE '<%%'")
                until(lambda: len(rows()) == 3, what="the row deleted on the page")
                driver.save_screenshot(os.environ["DP_SERVE_SCREENSHOT"])
        finally:
            stop.set()
            driver.quit()


if __name__ == "__main__":
    unittest.main()
