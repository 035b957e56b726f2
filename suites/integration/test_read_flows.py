"""Read flows an operator clicks through after a deploy: list, open one, a missing one is 404."""

from __future__ import annotations

import pytest

from opsverify.integration.flows import MISSING_ID, items_of, json_object, shape_problems
from opsverify.session import OpsSession
from opsverify.smoke.probes import HttpProbe

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("reads_allowed", "readiness")]


def _list(http: HttpProbe, ops: OpsSession):  # type: ignore[no-untyped-def]
    return http.get(f"{ops.profile.integration.items_path}?limit=5")


def test_list_returns_items(ops: OpsSession, http: HttpProbe, report_extra) -> None:
    """Office/field-service runbooks: "base user flows" after a deploy start with the list page."""
    result = _list(http, ops)
    report_extra.text("exchange", result.exchange())
    items = items_of(result)
    assert result.status == 200 and items is not None, (
        f"expected 200 with a JSON list (bare or under items/data/results), got {result.describe()}: "
        f"{result.body[:200]!r} — check the service log for this request's X-Request-Id"
    )
    problems = [f"item {i}: {p}" for i, item in enumerate(items) for p in shape_problems(item)]
    assert not problems, (
        f"expected every listed item to carry an id, got {problems[:5]} ({result.describe()})"
    )


def test_get_one_item(ops: OpsSession, http: HttpProbe, report_extra) -> None:
    """Opening one record reads through the cache and the database; it must match what the list said."""
    listing = _list(http, ops)
    listed = items_of(listing)
    assert listing.status == 200 and listed is not None, (
        f"expected the list to answer 200 so one item can be opened, got {listing.describe()}: "
        f"{listing.body[:200]!r}"
    )
    if not listed:
        pytest.skip(f"{ops.profile.integration.items_path} lists no items to open (empty target)")
    item_id = listed[0]["id"]
    result = http.get(f"{ops.profile.integration.items_path}/{item_id}")
    report_extra.text("exchange", result.exchange())
    body = json_object(result)
    assert result.status == 200 and body is not None, (
        f"expected 200 with the item as JSON, got {result.describe()}: {result.body[:200]!r}"
    )
    assert body.get("id") == item_id, (
        f"expected item id {item_id!r}, got {body.get('id')!r} ({result.describe()})"
    )


def test_missing_item_is_404(ops: OpsSession, http: HttpProbe, report_extra) -> None:
    """A missing id must be a clean 404, not a 500 that pages someone at night."""
    result = http.get(f"{ops.profile.integration.items_path}/{MISSING_ID}")
    report_extra.text("exchange", result.exchange())
    assert result.status == 404, (
        f"expected 404 for id {MISSING_ID}, got {result.describe()}: {result.body[:200]!r} "
        f"— missing records must not surface as server errors"
    )
