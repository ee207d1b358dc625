"""The Prometheus path end to end: postgres_exporter with the shipped
contrib/prometheus/queries.yaml gives the same series as
deploy_progress.metrics_prometheus(); Prometheus loads the shipped alert
rules, scrapes the exporter, and a stuck deployment makes the stuck alert
fire; every query of the shipped Grafana dashboard runs.

Needs Debian's prometheus and prometheus-postgres-exporter, psycopg 3, and
PGHOST/PGPORT/PGUSER/PGDATABASE naming a database with the extension
(test/clients/run.sh prometheus).  Waiting is bounded polling, never a
sleep that assumes a speed: the alert waits the rule's own minute."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import psycopg

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CONTRIB = os.path.join(REPO, "contrib")
QUERIES = os.path.join(CONTRIB, "prometheus", "queries.yaml")
RULES = os.path.join(CONTRIB, "prometheus", "alerts.yml")
RULE_TESTS = os.path.join(CONTRIB, "prometheus", "alerts_test.yml")
DASHBOARD = os.path.join(CONTRIB, "grafana", "deploy_progress.json")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(text, prefix="deploy_progress_"):
    """{(name, ((label, value), ...)): value} of the samples named prefix*,
    without the exporter's own "server" label."""
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m or not m.group(1).startswith(prefix):
            continue
        labels = tuple(sorted((k, v) for k, v in LABEL.findall(m.group(2)) if k != "server"))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def until(what, check, timeout):
    """Poll check() until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{what}: not seen within {timeout} s (last: {last!r})")


class PrometheusPath(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = psycopg.connect(autocommit=True)
        cls.conn.execute("""
            CREATE TABLE deployments (
                id int PRIMARY KEY,
                phase deploy_progress.phase NOT NULL DEFAULT 'queued',
                completed_items int, total_items int,
                phase_updated_at timestamptz, progress_updated_at timestamptz,
                heartbeat_at timestamptz, started_at timestamptz, finished_at timestamptz,
                failure_reason text)""")
        cls.conn.execute("""SELECT deploy_progress.track('deployments', heartbeat_deadline => '1 minute',
                                                          queue_deadline => '1 minute')""")
        # one deployment that succeeds and one that fails (history, counters)
        cls.conn.execute("INSERT INTO deployments (id) VALUES (1), (2)")
        cls.conn.execute("UPDATE deployments SET phase = 'building' WHERE id IN (1, 2)")
        cls.conn.execute("UPDATE deployments SET phase = 'succeeded' WHERE id = 1")
        cls.conn.execute("UPDATE deployments SET phase = 'failed', failure_reason = 'boom' WHERE id = 2")
        # and, written with stamping off as the owner may, one deployment
        # whose worker went silent an hour ago and one queued for an hour
        with cls.conn.transaction():
            cls.conn.execute("SET LOCAL deploy_progress.stamping = off")
            cls.conn.execute("""INSERT INTO deployments (id, phase, phase_updated_at, progress_updated_at, heartbeat_at, started_at)
                                VALUES (3, 'building', now() - interval '1 hour', now() - interval '1 hour',
                                        now() - interval '1 hour', now() - interval '1 hour'),
                                       (4, 'queued', now() - interval '1 hour', now() - interval '1 hour',
                                        now() - interval '1 hour', NULL)""")
        cls.tmp = tempfile.mkdtemp(prefix="dp_prometheus.")
        env = dict(os.environ)
        env["DATA_SOURCE_NAME"] = "host={} port={} user={} dbname={} sslmode=disable".format(
            os.environ["PGHOST"], os.environ["PGPORT"], os.environ.get("PGUSER", "postgres"),
            os.environ["PGDATABASE"])
        cls.logs = [open(os.path.join(cls.tmp, n), "w") for n in ("exporter.log", "prometheus.log")]
        cls.exporter_port = free_port()
        cls.exporter = subprocess.Popen(
            ["prometheus-postgres-exporter", "--disable-default-metrics", "--disable-settings-metrics",
             "--no-collector.database", "--no-collector.bgwriter",
             "--extend.query-path=" + QUERIES,
             "--web.listen-address=127.0.0.1:%d" % cls.exporter_port],
            env=env, stdout=cls.logs[0], stderr=subprocess.STDOUT)
        cls.prom_port = free_port()
        config = os.path.join(cls.tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: deploy_progress
    static_configs:
      - targets: ['127.0.0.1:{cls.exporter_port}']
""")
        cls.prometheus = subprocess.Popen(
            ["prometheus", "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(cls.tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % cls.prom_port],
            stdout=cls.logs[1], stderr=subprocess.STDOUT)
        cls.exporter_url = "http://127.0.0.1:%d/metrics" % cls.exporter_port
        cls.prom_url = "http://127.0.0.1:%d" % cls.prom_port
        until("the exporter's metrics", lambda: "deploy_progress_in_flight" in get(cls.exporter_url), 60)
        until("Prometheus ready", lambda: "Ready" in get(cls.prom_url + "/-/ready"), 60)

    @classmethod
    def tearDownClass(cls):
        for p in (cls.prometheus, cls.exporter):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in cls.logs:
            f.close()
        # the logs of a run with failures are printed
        result = getattr(cls, "failed", False)
        if result or os.environ.get("DP_KEEP_LOGS"):
            for n in ("exporter.log", "prometheus.log"):
                with open(os.path.join(cls.tmp, n)) as f:
                    print(f"--- {n} (last lines)\n" + "".join(f.readlines()[-40:]))
        shutil.rmtree(cls.tmp, ignore_errors=True)
        cls.conn.close()

    def run(self, result=None):
        result = super().run(result)
        if result is not None and (result.failures or result.errors):
            type(self).failed = True
        return result

    def query(self, expr):
        body = json.loads(get(self.prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
        self.assertEqual(body["status"], "success", expr)
        return body["data"]["result"]

    def test_exporter_gives_the_series_of_metrics_prometheus(self):
        direct = parse(self.conn.execute("SELECT deploy_progress.metrics_prometheus()").fetchone()[0])
        exported = parse(get(self.exporter_url))
        self.assertEqual(sorted(exported), sorted(direct))
        for series, value in direct.items():
            self.assertAlmostEqual(exported[series], value, places=6, msg=str(series))
        # and the series are the ones this table must have
        self.assertEqual(direct[("deploy_progress_stuck", (("reason", "no_heartbeat"), ("table", "public.deployments")))], 1)
        self.assertEqual(direct[("deploy_progress_stuck", (("reason", "queue_overdue"), ("table", "public.deployments")))], 1)
        self.assertEqual(direct[("deploy_progress_failures_total", (("phase", "building"), ("table", "public.deployments")))], 1)
        self.assertEqual(direct[("deploy_progress_in_flight", (("phase", "building"), ("table", "public.deployments")))], 1)
        self.assertIn(("deploy_progress_phase_duration_seconds_count", (("phase", "building"), ("table", "public.deployments"))), direct)
        self.assertEqual(direct[("deploy_progress_table_skipped", (("table", "public.deployments"),))], 0)
        # the only active row is silent and a row waits: the fleet is stalled
        self.assertEqual(direct[("deploy_progress_fleet_stalled", (("table", "public.deployments"),))], 1)

    def test_rules_check_and_unit_tests(self):
        subprocess.run(["promtool", "check", "rules", RULES], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["promtool", "test", "rules", RULE_TESTS], check=True, stdout=subprocess.DEVNULL)

    def test_stuck_deployment_fires_the_alerts(self):
        def firing():
            alerts = json.loads(get(self.prom_url + "/api/v1/alerts"))["data"]["alerts"]
            return {(a["labels"]["alertname"], a["labels"].get("reason")) for a in alerts
                    if a["state"] == "firing" and a["labels"].get("table") == "public.deployments"}
        # the rules wait one minute of continuous "stuck" before firing
        seen = until("DeployProgressStuck, DeployProgressQueueOverdue and DeployProgressFleetStalled firing",
                     lambda: (lambda f: f if {("DeployProgressStuck", "no_heartbeat"),
                                              ("DeployProgressQueueOverdue", None),
                                              ("DeployProgressFleetStalled", None)} <= f else None)(firing()),
                     240)
        # one failure is below the failure alert's threshold; no table is skipped
        self.assertNotIn(("DeployProgressFailures", None), seen)
        self.assertNotIn(("DeployProgressTableSkipped", None), seen)

    def test_dashboard_queries_run(self):
        with open(DASHBOARD) as f:
            dash = json.load(f)
        names = [v["name"] for v in dash["templating"]["list"]]
        self.assertEqual(names, ["datasource", "table"])
        until("a scrape in Prometheus", lambda: self.query("deploy_progress_in_flight"), 60)
        values = json.loads(get(self.prom_url + "/api/v1/label/table/values"))["data"]
        self.assertIn("public.deployments", values)
        results = {}
        for p in dash["panels"]:
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            for t in p["targets"]:
                results[p["title"]] = self.query(t["expr"].replace("$table", ".*"))
        # the panels of current values show this database's deployments
        self.assertEqual(float(results["In flight"][0]["value"][1]), 2)
        self.assertEqual(float(results["Stuck"][0]["value"][1]), 2)
        self.assertEqual(float(results["Tables skipped"][0]["value"][1]), 0)
        self.assertTrue(results["In flight by phase"])
        self.assertTrue(results["Stuck by reason"])
        self.assertTrue(results["Phase duration p95"])


if __name__ == "__main__":
    unittest.main()
