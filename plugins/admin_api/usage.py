"""`/admin/usage`: usage per account, key and model with totals, over a time range."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.params import Parameter
from tokone.core.domain.usage_report import UsageFilter, time_range, usage_report
from tokone.core.gateway import Gateway
from tokone.plugins.admin_api.bodies import ISO_DATE, MAX_INTEGER
from tokone.plugins.admin_api.shared import ERRORS


class UsageController(Controller):
    """Usage reports."""

    path = "/usage"

    @get("/", sync_to_thread=True, responses=ERRORS)
    def usage(
        self,
        gateway: Gateway,
        account: str | None = None,
        key: Annotated[int | None, Parameter(ge=1, le=MAX_INTEGER)] = None,
        model: str | None = None,
        since: Annotated[str | None, Parameter(pattern=ISO_DATE)] = None,
        until: Annotated[str | None, Parameter(pattern=ISO_DATE)] = None,
        # Litestar leaves `gt` out of an optional number's schema: said again for the docs.
        days: Annotated[
            float | None, Parameter(gt=0, le=36_500, schema_extra={"exclusiveMinimum": 0})
        ] = None,
    ) -> dict[str, Any]:
        """Usage per account, key and model with totals (`since`/`until` ISO 8601, or `days`)."""
        start, end = time_range(since, until, days)
        report = usage_report(gateway.engine, UsageFilter(account, key, model, start, end))
        return report.to_dict()
