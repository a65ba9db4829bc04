"""Grafana's dashboards and provisioning (grafana/), checked without Grafana.

No Grafana, InfluxDB or Docker runs here. What is checked instead: every dashboard is valid
JSON with the structure Grafana reads; the provisioning files parse and point at what
docker-compose.yml mounts (the dashboards folder, the data source, the token); every SQL query
(panels, annotations, variables) is expanded the way Grafana's InfluxDB SQL data source expands
it, parsed with a real SQL parser (sqlglot) and resolved against the measurements, tags and
fields that the simulator and the processor really write, taken from their code and configs;
the score panel's threshold is the demo config's; the alert link opens the machine dashboard.
Not checked: that Grafana renders the panels, and that InfluxDB 3 (DataFusion) accepts every
function used; sqlglot reads the queries as PostgreSQL, which DataFusion's SQL follows closely.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlglot
import yaml
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from hst_processor.alerts import format_link
from hst_processor.config import Config, load_config
from simulator.model import FIELDS
from tests.stack_files import mounts, read_compose, read_telegraf, repo_path_at

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_FILE = GRAFANA / "provisioning" / "datasources" / "influxdb3.yaml"
PROVIDER_FILE = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
MACHINE_DASHBOARD = GRAFANA / "dashboards" / "machines.json"
FLEET_DASHBOARD = GRAFANA / "dashboards" / "fleet.json"
GRAFANA_BUILTIN = {"type": "grafana", "uid": "-- Grafana --"}
DIALECT = "postgres"  # DataFusion, InfluxDB 3's SQL engine, follows PostgreSQL's syntax

# The self-metrics the dashboard must show, each: measurement hst_processor, tags host and
# version, and these fields. Counters are cumulative since the process started; the rest are
# gauges. That the processor writes them is checked on a real report (``self_metrics()``).
SELF_METRICS_MEASUREMENT = "hst_processor"
SELF_METRICS_TAGS = ("host", "version")
SELF_METRICS_GAUGES = (
    "series",
    "open_episodes",
    "state_save_seconds",
    "state_save_bytes",
    "batch_p50_ms",
    "batch_p99_ms",
    "rss_bytes",
)
SELF_METRICS_COUNTERS = (
    "lines_in",
    "lines_out",
    "metrics_in",
    "scored",
    "anomalous",
    "warmup",
    "unparseable",
    "passed_through",
    "evicted",
    "alerts_sent",
    "alerts_retried",
    "alerts_dropped",
    "alerts_failed",
    "state_saves",
)
# The anomaly tag's values besides the warm-up one (hst_processor/detector.py, README's
# "What comes out").
EPISODE_VALUES = ("true", "false")


# --- what the simulator and the processor write ----------------------------------------------


@dataclass(frozen=True)
class Measurement:
    name: str
    tags: frozenset[str]
    fields: frozenset[str]

    def columns(self) -> dict[str, str]:
        columns = {"time": "timestamp"}
        columns.update({tag: "text" for tag in self.tags})
        columns.update({field: "double" for field in self.fields})
        return columns


@functools.cache
def demo_config() -> Config:
    return load_config(ROOT / "hst-processor.yaml")


@functools.cache
def machine_data() -> Measurement:
    """What reaches InfluxDB from the simulator through Telegraf's JSON parser and the
    processor: Telegraf's measurement and tag keys, the simulator's readings, and the tag and
    fields the processor adds with the demo config."""
    telegraf = read_telegraf()
    (mqtt,) = telegraf["inputs"]["mqtt_consumer"]
    config = demo_config()
    output = config.output
    assert mqtt["name_override"] in config.measurements
    added = {output.score_field, output.feature_field, output.raw_score_field} - {""}
    return Measurement(
        name=mqtt["name_override"],
        tags=frozenset([*mqtt["tag_keys"], output.tag]),
        fields=frozenset([*FIELDS, *added]),
    )


@functools.cache
def self_metrics() -> Measurement:
    """The processor's report on itself, as the processor writes it: the fields of a report
    on a processor that has run a batch (so the latency gauges are there) and its tags."""
    import io

    from hst_processor.config import SelfMetricsConfig, parse_config
    from hst_processor.log import Log
    from hst_processor.processor import Processor
    from hst_processor.selfmetrics import SelfReport, report_fields

    processor = Processor(parse_config({}), Log(io.StringIO()))
    processor.feed("m v=1 1\n")
    fields = report_fields(processor, [0.001])
    report = SelfReport(SelfMetricsConfig(), host="h")
    return Measurement(SelfMetricsConfig().measurement, frozenset(report.tags), frozenset(fields))


# --- Grafana's expansion of a query, and the check of its SQL -------------------------------

RANGE_FROM, RANGE_TO, INTERVAL_SECONDS = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", 10


def _bin(column: str) -> str:
    origin = "timestamp '1970-01-01T00:00:00Z'"
    return f"date_bin(interval '{INTERVAL_SECONDS} second', {column}, {origin})"


# The backend macros of Grafana's InfluxDB SQL data source (pkg/tsdb/influxdb/fsql/macro.go and
# the plugin SDK's sqlutil), as they expand. $__interval is left out on purpose: Grafana's front
# end replaces it with a duration such as "10s" before the backend sees it, which is no SQL.
MACROS: dict[str, Callable[..., str]] = {
    "timeFilter": lambda column: f"{column} >= '{RANGE_FROM}' AND {column} <= '{RANGE_TO}'",
    "timeFrom": lambda: f"cast('{RANGE_FROM}' as timestamp)",
    "timeTo": lambda: f"cast('{RANGE_TO}' as timestamp)",
    "dateBin": _bin,
    "dateBinAlias": lambda column: f"{_bin(column)} as {column}_binned",
}
MACRO = re.compile(r"\$__(\w+)(?:\(([^)]*)\))?")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


class QueryProblem(Exception):
    pass


def expand(sql: str, variables: dict[str, str]) -> str:
    """The query as the data source sends it: dashboard variables and macros replaced."""

    def macro(match: re.Match[str]) -> str:
        name, arguments = match.group(1), match.group(2)
        if name not in MACROS:
            raise QueryProblem(f"unknown or unsupported macro $__{name}")
        args = [a.strip() for a in arguments.split(",")] if arguments else []
        try:
            return str(MACROS[name](*args))
        except TypeError as error:
            raise QueryProblem(f"$__{name}: wrong arguments {args}") from error

    def variable(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in variables:
            raise QueryProblem(f"${name} is not a variable of this dashboard")
        return variables[name]

    return VARIABLE.sub(variable, MACRO.sub(macro, sql))


def check_query(sql: str, fmt: str, variables: dict[str, str]) -> exp.Query:
    """Parse and resolve one query; raise QueryProblem naming what is wrong."""
    expanded = expand(sql, variables)
    try:
        statements = sqlglot.parse(expanded, read=DIALECT)
    except SqlglotError as error:
        raise QueryProblem(f"does not parse: {error}") from error
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise QueryProblem("not one SELECT statement")
    statement = statements[0]
    measurements = {m.name: m for m in (machine_data(), self_metrics())}
    ctes = {cte.alias for cte in statement.find_all(exp.CTE)}
    tables = {t.name for t in statement.find_all(exp.Table)} - ctes
    if not tables or not tables <= set(measurements):
        raise QueryProblem(f"reads {sorted(tables)}, not only {sorted(measurements)}")
    schema = MappingSchema(
        {name: m.columns() for name, m in measurements.items()}, dialect=DIALECT, normalize=False
    )
    try:
        qualified = qualify(
            statement.copy(),
            schema=schema,
            dialect=DIALECT,
            validate_qualify_columns=True,
            quote_identifiers=False,
        )
    except SqlglotError as error:
        raise QueryProblem(f"a column is not written: {error}") from error
    tag = demo_config().output
    allowed = {*EPISODE_VALUES, tag.warmup_value}
    for comparison in qualified.find_all(exp.EQ, exp.NEQ):
        sides = (comparison.left, comparison.right)
        if any(isinstance(s, exp.Column) and s.name == tag.tag for s in sides):
            for side in sides:
                if isinstance(side, exp.Literal) and side.is_string and side.this not in allowed:
                    raise QueryProblem(f"{tag.tag} is never {side.this!r}: {sorted(allowed)}")
    if fmt == "time_series":
        # Grafana's Flight SQL reader wants a column named time and, to pivot a long result
        # into series, rows in ascending time.
        if "time" not in statement.named_selects:
            raise QueryProblem("a time series needs a column named time")
        order = statement.args.get("order")
        first = order.expressions[0] if order else None
        key = first.this if first is not None else None
        ordered_by_time = (isinstance(key, exp.Column) and key.name == "time") or (
            isinstance(key, exp.Literal)
            and not key.is_string
            and statement.named_selects[int(key.this) - 1] == "time"
        )
        if not ordered_by_time or (first is not None and first.args.get("desc")):
            raise QueryProblem("a time series must be ORDER BY time ascending")
    elif fmt != "table":
        raise QueryProblem(f"format {fmt!r} is neither time_series nor table")
    return qualified


# --- the dashboards' queries -----------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    where: str
    sql: str
    format: str
    dashboard: dict[str, Any]

    def variables(self) -> dict[str, str]:
        return {v["name"]: sample_value(v) for v in self.dashboard["templating"]["list"]}


def sample_value(variable: dict[str, Any]) -> str:
    return "machine1" if variable["name"] == "machine" else "sample"


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def queries(path: Path) -> Iterator[Query]:
    dashboard = load(path)
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            where = f"{path.name}: {panel['title']} {target['refId']}"
            yield Query(where, target["rawSql"], target["format"], dashboard)
    for annotation in dashboard["annotations"]["list"]:
        if "target" in annotation:
            target = annotation["target"]
            where = f"{path.name}: annotation {annotation['name']}"
            yield Query(where, target["rawSql"], target["format"], dashboard)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield Query(f"{path.name}: ${variable['name']}", variable["query"], "table", dashboard)


ALL_QUERIES = [q for path in DASHBOARD_FILES for q in queries(path)]


def columns_read(query: Query) -> set[str]:
    qualified = check_query(query.sql, query.format, query.variables())
    return {c.name for c in qualified.find_all(exp.Column)}


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return read_compose()


# --- the files -------------------------------------------------------------------------------


def test_the_dashboards_are_the_two_expected() -> None:
    assert [p.name for p in DASHBOARD_FILES] == ["fleet.json", "machines.json"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_a_dashboard_is_json_with_the_structure_grafana_reads(path: Path) -> None:
    dashboard = load(path)
    assert isinstance(dashboard["uid"], str) and re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    assert dashboard["time"]["from"].startswith("now-") and dashboard["time"]["to"] == "now"
    assert isinstance(dashboard["templating"]["list"], list)
    assert isinstance(dashboard["annotations"]["list"], list)
    panels = list(all_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "two panels share an id"
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] >= 0 and position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["rawQuery"] is True and target["rawSql"].strip(), panel["title"]
    uids = [load(p)["uid"] for p in DASHBOARD_FILES]
    assert len(uids) == len(set(uids))


def test_every_data_source_reference_is_the_provisioned_one() -> None:
    (source,) = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]
    provisioned = {"type": source["type"], "uid": source["uid"]}

    def references(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            if "datasource" in node:
                yield node["datasource"]
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for value in node:
                yield from references(value)

    for path in DASHBOARD_FILES:
        found = list(references(load(path)))
        assert found
        for reference in found:
            assert reference in (provisioned, GRAFANA_BUILTIN), f"{path.name}: {reference}"


def test_the_data_source_is_influxdb3_in_sql_mode_with_database_and_token_from_the_stack(
    compose: dict[str, Any],
) -> None:
    document = yaml.safe_load(DATASOURCE_FILE.read_text())
    assert document["apiVersion"] == 1
    (source,) = document["datasources"]
    assert source["type"] == "influxdb" and source["access"] == "proxy"
    # The same server Telegraf writes to, over Flight SQL without TLS (the stack has none).
    telegraf = read_telegraf()
    (output,) = telegraf["outputs"]["influxdb_v3"]
    assert [source["url"]] == output["urls"]
    url = urllib.parse.urlsplit(source["url"])
    assert url.hostname in compose["services"]
    json_data = source["jsonData"]
    assert json_data["version"] == "SQL"
    assert json_data["insecureGrpc"] is (url.scheme == "http")
    # The database: the variable Telegraf's output reads, given to Grafana with the same default.
    (database,) = re.findall(r"^\$\{(\w+)\}$", json_data["dbName"])
    telegraf_env = compose["services"]["telegraf"]["environment"]
    grafana_env = compose["services"]["grafana"]["environment"]
    assert output["database"].startswith("${" + database)
    assert grafana_env[database] == telegraf_env[database]
    # The token: a variable, never a value; Grafana's entrypoint exports it (test_stack.py runs
    # that script) from the token volume, which compose mounts where the script reads it.
    (token,) = re.findall(r"^\$\{(\w+)\}$", source["secureJsonData"]["token"])
    entrypoint = (ROOT / "docker" / "with-influxdb3-token.sh").read_text()
    assert f"export {token}" in entrypoint
    assert token not in grafana_env
    assert mounts(compose, "grafana")["/var/lib/influxdb3-token"] == "influxdb3-token"
    assert "/var/lib/influxdb3-token/token" in entrypoint


def test_the_provisioning_and_dashboards_are_mounted_where_grafana_reads_them(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    provisioning = "/etc/grafana/provisioning"
    for kind in ("datasources", "dashboards"):
        folder = repo_path_at(compose, "grafana", f"{provisioning}/{kind}")
        assert folder == GRAFANA / "provisioning" / kind
        assert list(folder.glob("*.yaml")), f"nothing to provision in {folder}"
    (provider,) = yaml.safe_load(PROVIDER_FILE.read_text())["providers"]
    assert provider["type"] == "file"
    assert repo_path_at(compose, "grafana", provider["options"]["path"]) == GRAFANA / "dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert repo_path_at(compose, "grafana", home) == FLEET_DASHBOARD
    entrypoint = grafana["entrypoint"]
    assert (
        repo_path_at(compose, "grafana", entrypoint[1]) == ROOT / "docker/with-influxdb3-token.sh"
    )
    # Every folder of grafana/ that holds files Grafana reads is mounted.
    mounted = {ROOT / s for s in mounts(compose, "grafana").values() if s.startswith("./")}
    for folder in {p.parent for p in GRAFANA.rglob("*") if p.suffix in (".json", ".yaml")}:
        assert folder in mounted, f"{folder.relative_to(ROOT)} is not mounted"


def test_anonymous_visitors_may_only_view(compose: dict[str, Any]) -> None:
    environment = compose["services"]["grafana"]["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert compose["services"]["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


# --- the queries -----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ALL_QUERIES, ids=lambda q: q.where)
def test_a_query_parses_and_reads_only_what_the_processor_and_simulator_write(
    query: Query,
) -> None:
    try:
        check_query(query.sql, query.format, query.variables())
    except QueryProblem as problem:
        pytest.fail(f"{query.where}: {problem}")


GOOD = """SELECT $__dateBin(time) AS time, max(anomaly_score) AS anomaly_score
FROM machine_data WHERE "machineID" = '${machine}' AND anomaly = 'true' AND $__timeFilter(time)
GROUP BY 1 ORDER BY 1"""


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (None, None, None),
        ("max(anomaly_score)", "max(anomaly_scor)", "not written"),
        ('"machineID"', "machineID", "not written"),  # unquoted: folded to machineid
        ("FROM machine_data", "FROM machines", "reads ['machines']"),
        ("$__timeFilter(time)", "$__timeFliter(time)", "unknown or unsupported macro"),
        ("$__dateBin(time)", "date_bin($__interval, time)", "unknown or unsupported macro"),
        ("${machine}", "${machin}", "not a variable"),
        ("'true'", "'True'", "never 'True'"),
        ("ORDER BY 1", "ORDER BY 1 DESC", "ascending"),
        ("AS time,", "AS t,", "column named time"),
        ("GROUP BY 1", "GROUP BY 1 (", "does not parse"),
    ],
)
def test_the_query_check_finds_a_real_defect(
    old: str | None, new: str | None, problem: str | None
) -> None:
    sql = GOOD if old is None else GOOD.replace(old, new or "")
    assert sql != GOOD or old is None
    if problem is None:
        check_query(sql, "time_series", {"machine": "machine1"})
        return
    with pytest.raises(QueryProblem, match=re.escape(problem)):
        check_query(sql, "time_series", {"machine": "machine1"})


def test_the_processor_writes_every_self_metric_the_dashboard_shows() -> None:
    written = self_metrics()
    assert written.name == SELF_METRICS_MEASUREMENT
    assert set(SELF_METRICS_TAGS) <= written.tags
    assert set(SELF_METRICS_GAUGES + SELF_METRICS_COUNTERS) <= written.fields


# --- what the dashboards show ----------------------------------------------------------------


def test_the_machine_dashboard_shows_one_machine_its_readings_score_and_episodes() -> None:
    dashboard = load(MACHINE_DASHBOARD)
    config = demo_config()
    measurement = machine_data()
    (group,) = config.group_by or ()
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "machine" and variable["type"] == "query"
    assert not variable["multi"] and not variable["includeAll"]
    selected = check_query(variable["query"], "table", {})
    assert [c.name for c in selected.selects[0].find_all(exp.Column)] == [group]
    # Every panel is about the selected machine.
    panel_queries = [q for q in queries(MACHINE_DASHBOARD) if "annotation" not in q.where]
    for query in panel_queries:
        if not query.where.endswith(f"${variable['name']}"):
            assert f"\"{group}\" = '${{{variable['name']}}}'" in query.sql, query.where
    read = {q.where: columns_read(q) for q in panel_queries}
    # Each reading the simulator sends, the score, and the feature that drove it.
    for name in (*FIELDS, config.output.score_field, config.output.feature_field):
        assert any(name in columns for columns in read.values()), f"{name} is not shown"
    # The episodes (anomaly=true) shade the time series as regions from time to timeEnd.
    episodes = [a for a in dashboard["annotations"]["list"] if "target" in a]
    assert len(episodes) == 1 and episodes[0]["enable"]
    target = episodes[0]["target"]
    region = check_query(target["rawSql"], target["format"], {"machine": "machine1"})
    assert {"time", "timeEnd", "text"} <= set(region.named_selects)
    assert f"{config.output.tag} = 'true'" in target["rawSql"]
    assert config.output.tag in measurement.tags


def test_the_score_panel_draws_the_demo_configs_threshold() -> None:
    threshold = demo_config().detection.threshold
    score = demo_config().output.score_field
    panels = [
        p
        for p in all_panels(load(MACHINE_DASHBOARD)["panels"])
        if p["type"] == "timeseries" and any(score in t["rawSql"] for t in p["targets"])
    ]
    assert len(panels) == 1
    defaults = panels[0]["fieldConfig"]["defaults"]
    steps = [s["value"] for s in defaults["thresholds"]["steps"]]
    assert steps == [None, threshold]
    assert defaults["custom"]["thresholdsStyle"]["mode"] in ("line", "dashed", "line+area")
    assert str(threshold) in panels[0]["description"]


def test_the_fleet_dashboard_shows_the_machines_now_and_every_self_metric() -> None:
    fleet = list(queries(FLEET_DASHBOARD))
    processor = self_metrics()
    read = {q.where: columns_read(q) for q in fleet}
    shown = set().union(*read.values())
    assert set(SELF_METRICS_GAUGES + SELF_METRICS_COUNTERS) <= shown
    assert "machineID" in shown and demo_config().output.tag in shown
    titles = " ".join(p["title"] for p in all_panels(load(FLEET_DASHBOARD)["panels"]))
    assert "now" in titles and "per day" in titles
    # A counter is cumulative since the process started: shown as the difference between two
    # reports (lag), never as its raw value.
    for query in fleet:
        for counter in SELF_METRICS_COUNTERS:
            if counter in read[query.where]:
                assert f"lag({counter})" in query.sql, f"{query.where}: {counter} plotted raw"
    assert processor.name in " ".join(q.sql for q in fleet)


def test_the_alert_link_opens_the_machine_dashboard_on_that_machine(
    compose: dict[str, Any],
) -> None:
    config = demo_config()
    dashboard = load(MACHINE_DASHBOARD)
    (variable,) = dashboard["templating"]["list"]
    (group,) = config.group_by or ()
    link = format_link(config.alerts.link_template, {group: "machine 2"}, "machine_data")
    url = urllib.parse.urlsplit(link)
    assert url.path == f"/d/{dashboard['uid']}"
    assert urllib.parse.parse_qs(url.query) == {f"var-{variable['name']}": ["machine 2"]}
    published = compose["services"]["grafana"]["ports"]
    assert f"127.0.0.1:{url.port}:3000" in published and url.hostname == "localhost"
