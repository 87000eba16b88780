"""The triage grid's column definitions (AG Grid `columnDefs`): plain data, no Dash.

Cells that need markup (run link, badges, layer lights, sparkline, age) name renderers defined in
`assets/dashAgGridComponentFunctions.js`; those only draw what `grid_rows.row_record`
precomputed. Sorting and filtering happen on the server (they are part of the URL), so columns
are not sortable in the browser; the grid only sorts by the hidden `order` the server assigned.
"""

from __future__ import annotations

from typing import Any

from trainlight.collectors.health.registry import specs
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import STATE_SHAPES

DEFAULT_COL_DEF: dict[str, Any] = {
    "sortable": False,
    "resizable": True,
    "suppressHeaderMenuButton": True,
    "suppressMovable": True,
}

ROW_SELECTION: dict[str, Any] = {
    "mode": "multiRow",
    "checkboxes": True,
    "headerCheckbox": True,
    "enableClickSelection": False,
}


def signal_column(spec: SignalSpec) -> dict[str, Any]:
    return {
        "headerName": spec.column,
        "headerTooltip": spec.summary,
        "field": f"h_{spec.name}",
        "colId": f"h_{spec.name}",
        "cellRenderer": "HealthBadge",
        "cellRendererParams": {"reasonField": f"r_{spec.name}", "shapes": STATE_SHAPES},
        "width": 84,  # nine signals and the run facts fit a 1280 px window
        "cellClass": "cell-center",
        "headerClass": "header-center",
    }


# Rows arrive sorted on the server (the sort is part of the URL) with their position in
# `order`; sorting by this hidden column keeps that order when rows come as a transaction.
ORDER_COLUMN: dict[str, Any] = {
    "field": "order",
    "colId": "order",
    "hide": True,
    "sortable": True,
    "sort": "asc",
    "suppressColumnsToolPanel": True,
}


def column_defs() -> list[dict[str, Any]]:
    return [
        ORDER_COLUMN,
        {
            "headerName": "Run",
            "field": "name",
            "cellRenderer": "RunLink",
            "minWidth": 180,
            "flex": 2,
            "tooltipField": "run_id",
        },
        {"headerName": "Group", "field": "group", "minWidth": 100, "flex": 1},
        {"headerName": "Status", "field": "status", "cellRenderer": "RunStatus", "width": 110},
        *[signal_column(spec) for spec in specs()],
        {
            "headerName": "LCA layers",
            "headerTooltip": "Latest LCA per layer, in model order: ● helping ■ hurting ○ no data",
            "field": "lca_layers",
            "cellRenderer": "LayerLights",
            "minWidth": 110,
            "flex": 1,
        },
        {
            "headerName": "Main loss",
            "field": "spark",
            "cellRenderer": "Sparkline",
            "width": 150,
        },
        {
            "headerName": "Step",
            "field": "step_text",
            "width": 90,
            "type": "rightAligned",
        },
        {
            "headerName": "Updated",
            "field": "updated_ms",
            "cellRenderer": "Age",  # "12s ago", ticking in the browser
            "width": 100,
        },
    ]
