"""Customer notices' pure rules: which move tells what once, templates, backoff."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.notices import TemplateError, backoff_seconds, notice_for, render, until_problem
from domain.status import OrderStatus
from services.config import Settings
from services.notices import TEMPLATES, template_text


def test_which_moves_notify_and_their_once_keys() -> None:
    assert notice_for(OrderStatus.RESERVED, "reserved") == ("confirmed", "confirmed")
    # A second wave's reservation is the same "confirmed": it is not sent twice.
    assert notice_for(OrderStatus.RESERVED, "reserved:2") == ("confirmed", "confirmed")
    assert notice_for(OrderStatus.BACKORDERED, "backordered:A,B") == ("waiting", "waiting")
    assert notice_for(OrderStatus.SHIPPED, "shipped:2") == ("shipped", "shipped:2")
    assert notice_for(OrderStatus.DELIVERED, "delivered:T1") == ("delivered", "delivered")
    for quiet in (OrderStatus.VALIDATED, OrderStatus.PICKING, OrderStatus.INVOICED):
        assert notice_for(quiet, quiet.value) is None


def test_render_fills_placeholders_and_keeps_unknown_ones() -> None:
    subject, body = render(
        "Subject: Order $order_id\n\nHi $name, $unknown.\n", {"order_id": "SO-1", "name": "Ann"}
    )
    assert subject == "Order SO-1"
    assert body == "Hi Ann, $unknown.\n"
    with pytest.raises(TemplateError):
        render("no subject line\n\nbody", {})


def test_every_shipped_template_renders() -> None:
    for path in sorted(TEMPLATES.glob("*.txt")):
        subject, body = render(path.read_text(), {"order_id": "SO-1"})
        assert "SO-1" in subject and body.strip(), path.name
    assert {p.stem for p in TEMPLATES.glob("*.txt")} == {
        "confirmed", "waiting", "shipped", "delayed", "delivered", "disrupted",
        "return_approved", "return_refused", "return_credited",
    }  # fmt: skip


def test_a_company_template_replaces_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "shipped.txt").write_text(
        "Subject: On its way: $order_id\n\nTrack $tracking_number\n"
    )
    settings = Settings(notice_templates=tmp_path)
    assert template_text(settings, "shipped").startswith("Subject: On its way")
    assert template_text(settings, "delivered") == (TEMPLATES / "delivered.txt").read_text()


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_seconds(n, 5.0) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff_seconds(30, 5.0) == 3600.0


def test_until_is_today_or_later() -> None:
    assert until_problem(date(2026, 1, 2), date(2026, 1, 2)) is None
    assert "until must be today" in str(until_problem(date(2026, 1, 1), date(2026, 1, 2)))
