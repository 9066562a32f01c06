"""Dashboards as plain data (boards, rows, panels, queries) and their rendering to Grafana JSON.

The data is what :mod:`dashboards.boards` writes and what the end-to-end test runs against a real
Prometheus; :func:`render` turns it into a Grafana 11 dashboard with grafana-foundation-sdk.

>>> board = Board("demo", "Demo", "One panel.", (Row("Row", (Panel("Up", "s", (Query("up", "{{job}}"),)),)),))
>>> render(board)["panels"][1]["targets"][0]["expr"]
'up'
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.dashboard import DataSourceRef

__all__ = ["Board", "Panel", "Query", "Row", "Variable", "render", "to_json"]

#: Every query runs on the dashboard's Prometheus data source variable.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["otel_pipeline"]


@dataclass(frozen=True)
class Query:
    """One PromQL expression and its legend; ``exemplars`` asks Grafana to fetch exemplars too."""

    expr: str
    legend: str
    exemplars: bool = False


@dataclass(frozen=True)
class Panel:
    """A time series (or a single-value ``stat``) panel with a Grafana unit."""

    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    kind: Literal["timeseries", "stat"] = "timeseries"
    width: int = 12
    height: int = 8
    stacked: bool = False


@dataclass(frozen=True)
class Row:
    """A titled row of panels, laid out left to right."""

    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A query variable: values of ``label`` on ``metric`` (which may use earlier variables)."""

    name: str
    label: str
    metric: str
    title: str


@dataclass(frozen=True)
class Board:
    """One dashboard, written to ``dashboards/<file_stem>.json``."""

    file_stem: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = field(
        default=(
            Variable("job", "job", "target_info", "Service"),
            Variable("instance", "instance", 'target_info{job=~"$job"}', "Instance"),
        )
    )

    @property
    def uid(self) -> str:
        """The dashboard's Grafana uid, stable across regenerations."""
        return f"otel-pipeline-{self.file_stem}"

    def panels(self) -> Iterator[Panel]:
        """Every panel, row by row."""
        for row in self.rows:
            yield from row.panels


def _variables(
    board: Board,
) -> list[dashboard_builders.DatasourceVariable | dashboard_builders.QueryVariable]:
    built: list[Any] = [
        dashboard_builders.DatasourceVariable("datasource").label("Data source").type("prometheus")
    ]
    for variable in board.variables:
        built.append(
            dashboard_builders.QueryVariable(variable.name)
            .label(variable.title)
            .datasource(DATASOURCE)
            .query(f"label_values({variable.metric}, {variable.label})")
            .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    return built


def _panel(panel: Panel, panel_id: int) -> Any:
    builder: Any
    if panel.kind == "stat":
        builder = stat.Panel().graph_mode(common.BigValueGraphMode("area"))
    else:
        builder = (
            timeseries.Panel()
            .fill_opacity(20 if panel.stacked else 10)
            .legend(
                common_builders.VizLegendOptions()
                .display_mode(common.LegendDisplayMode("table"))
                .placement(common.LegendPlacement("bottom"))
                .show_legend(True)
                .calcs(["mean", "max", "lastNotNull"])
            )
        )
        if panel.stacked:
            builder = builder.stacking(common_builders.StackingConfig().mode(common.StackingMode("normal")))
    builder = (
        builder.id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .span(panel.width)
        .height(panel.height)
    )
    for index, query in enumerate(panel.queries):
        builder = builder.with_target(
            prometheus.Dataquery()
            .ref_id(chr(ord("A") + index))
            .expr(query.expr)
            .legend_format(query.legend)
            .range()
            .exemplar(query.exemplars)
            .datasource(DATASOURCE)
        )
    return builder


def render(board: Board) -> dict[str, Any]:
    """The Grafana dashboard JSON model of ``board`` (a dict, keys as Grafana stores them)."""
    builder = (
        dashboard_builders.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard_builders.DashboardLink("otel_pipeline dashboards")
            .type(dashboard_models.DashboardLinkType("dashboards"))
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in _variables(board):
        builder = builder.with_variable(variable)
    panel_id = 1
    for row in board.rows:
        builder = builder.with_row(dashboard_builders.Row(row.title).id(panel_id))
        panel_id += 1
        for panel in row.panels:
            builder = builder.with_panel(_panel(panel, panel_id))
            panel_id += 1
    model: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))
    for variable in model["templating"]["list"]:
        # Grafana's default; left out so the JSON validates against the published schema.
        variable.pop("allowCustomValue", None)
    return model


def to_json(board: Board) -> str:
    """The dashboard file's text: :func:`render`, sorted keys, two-space indent, final newline."""
    return json.dumps(render(board), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
