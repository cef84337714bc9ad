"""The picker's walk: bin codes, geometry, and the walk's order and metres."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.layout import DEFAULT_LAYOUT, BinLocation, Layout, parse_bin, plan_walk

# An independent model of the default floor, to check the metres plan_walk reports.
ASPACE, BAY, ZONE = 3.0, 1.2, 30.0


def _point(code: str) -> tuple[float, float] | None:
    loc = parse_bin(code)
    if loc is None:
        return None
    zone_x = (ord(loc.zone[0]) - ord("A")) * ZONE if len(loc.zone) == 1 else None
    assert zone_x is not None
    return zone_x + (loc.aisle - 1) * ASPACE, (loc.bay - 0.5) * BAY


def _reference_tour(codes: list[str]) -> float:
    pts = [p for p in map(_point, codes) if p is not None]
    deepest = max((parse_bin(c).bay for c in codes if parse_bin(c)), default=0)  # type: ignore[union-attr]
    length = max(20, deepest) * BAY
    route = [(0.0, 0.0), *pts, (0.0, 0.0)]
    total = 0.0
    for (x1, y1), (x2, y2) in itertools.pairwise(route):
        if x1 == x2:
            total += abs(y1 - y2)
        else:
            total += abs(x1 - x2) + min(y1 + y2, 2 * length - y1 - y2)
    return total


located_code = st.builds(
    lambda z, a, b, lvl, pad: f"{z}-{a:0{pad}d}-{b}" + (f"-{lvl}" if lvl else ""),
    st.sampled_from("ABC"),
    st.integers(0, 14),
    st.integers(0, 26),
    st.sampled_from(["", "A", "B", "C"]),
    st.sampled_from([1, 2]),
)
any_code = st.one_of(located_code, located_code, located_code, st.text(max_size=8))
bins_lists = st.lists(any_code, max_size=25)


def test_parse_bin_reads_the_parts_and_the_legacy_style():
    assert parse_bin("A-03-2-B") == BinLocation(zone="A", aisle=3, bay=2, level="B")
    assert parse_bin(" b-12-07 ") == BinLocation(zone="B", aisle=12, bay=7, level="")
    assert parse_bin("A-00-00") is None  # the old default: nowhere yet
    assert parse_bin("A-03-0-A") is None
    assert parse_bin("dock") is None
    assert parse_bin("A-03-2-B-9") is None


def test_a_single_aisle_is_walked_in_and_back():
    walk = plan_walk(["A-01-20", "A-01-1"])
    assert walk.order == [1, 0]
    assert walk.distance_m == pytest.approx(2 * 23.4)


def test_two_picks_at_the_back_cross_via_the_back_aisle():
    walk = plan_walk(["A-02-20", "A-01-20"])
    assert walk.order == [1, 0]
    # in 23.4, across the back 3 + 1.2, out 23.4 and along the front 3.
    assert walk.distance_m == pytest.approx(54.0)


def test_number_aware_aisle_10_comes_after_9():
    bins = ["A-1-1", "A-10-1", "A-2-1", "A-9-1"]
    walk = plan_walk(bins)
    assert [bins[i] for i in walk.order] == ["A-1-1", "A-2-1", "A-9-1", "A-10-1"]
    assert walk.distance_m < walk.by_code_m
    assert walk.distance_m == pytest.approx(2 * 27 + 8 * 0.6)  # in and out of 4 aisles
    assert walk.saved_pct > 0


def test_serpentine_through_full_aisles_beats_code_order():
    # Picks along the whole of six aisles: walking each aisle through, alternating
    # direction, is far shorter than going in and out of each one in code order.
    bins = [f"A-{a:02d}-{b}" for a in range(1, 7) for b in (1, 10, 20)]
    walk = plan_walk(bins)
    serpentine = 0.6 + 6 * 22.8 + 5 * 4.2 + 15.6
    assert walk.distance_m == pytest.approx(serpentine)
    assert walk.by_code_m > 1.5 * walk.distance_m
    codes = [bins[i] for i in walk.order]
    assert codes[:6] == ["A-01-1", "A-01-10", "A-01-20", "A-02-20", "A-02-10", "A-02-1"]


def test_front_and_back_picks_take_the_largest_gap_loop():
    # Out along the back picks, home along the front ones: no aisle is walked through.
    bins = [f"A-{a:02d}-{b}" for a in range(1, 7) for b in (1, 20)]
    walk = plan_walk(bins)
    assert walk.distance_m == pytest.approx(0.6 + 2 * 22.8 + 9 * 4.2 + 3.6)
    codes = [bins[i] for i in walk.order]
    assert codes[:3] == ["A-01-1", "A-01-20", "A-02-20"]
    assert codes[-1] == "A-02-1"


def test_unlocated_bins_go_last_by_code_and_cost_nothing():
    bins = ["zz", "A-02-3", "A-00-00", "", "A-01-1"]
    walk = plan_walk(bins)
    assert [bins[i] for i in walk.order][2:] == ["", "A-00-00", "zz"]
    assert plan_walk(["zz", "A-00-00"]) == plan_walk(["zz", "A-00-00"])
    assert plan_walk(["zz", "A-00-00"]).distance_m == 0.0
    assert plan_walk([]).order == []


def test_a_site_layout_changes_the_metres():
    bins = ["A-01-1", "B-01-1"]
    assert plan_walk(bins).distance_m == pytest.approx(2 * 30 + 4 * 0.6)
    wide = Layout(zones={"B": 100.0}, bay_width_m=2.0)
    assert plan_walk(bins, wide).distance_m == pytest.approx(2 * 100 + 4 * 1.0)
    assert DEFAULT_LAYOUT == Layout()


def test_a_bad_layout_names_the_field():
    with pytest.raises(ValidationError, match="aisle_spacing_m"):
        Layout.model_validate({"aisle_spacing_m": 0})
    with pytest.raises(ValidationError, match="zones"):
        Layout.model_validate({"zones": {"a1": 3}})
    with pytest.raises(ValidationError, match="aisles"):
        Layout.model_validate({"aisles": 3})


@given(bins_lists)
@settings(max_examples=300, deadline=None)
def test_walk_properties(bins: list[str]):
    walk = plan_walk(bins)
    # A permutation of the input's indices.
    assert sorted(walk.order) == list(range(len(bins)))
    # Never longer than walking in code order (that walk is one of the candidates).
    assert walk.distance_m <= walk.by_code_m
    # Deterministic.
    assert plan_walk(list(bins)) == walk
    # The metres are those of the order it gives, on an independent model of the floor,
    # and the by-code metres those of sorting by code.
    ordered = [bins[i] for i in walk.order]
    assert walk.distance_m == pytest.approx(_reference_tour(ordered), abs=0.01)
    by_code = [bins[i] for i in sorted(range(len(bins)), key=lambda i: (bins[i], i))]
    assert walk.by_code_m == pytest.approx(_reference_tour(by_code), abs=0.01)
    # Unlocated bins all come last, by code.
    flags = [parse_bin(c) is None for c in ordered]
    assert flags == sorted(flags)
    tail = [c for c in ordered if parse_bin(c) is None]
    assert tail == sorted(tail)
    # Any walk must at least reach the farthest bin and come back.
    far = max(
        (p[0] + p[1] for c in bins if (p := _point(c)) is not None),
        default=0.0,
    )
    assert walk.distance_m >= 2 * far - 0.01


@given(st.lists(located_code, min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_walk_is_close_to_the_best_possible(bins: list[str]):
    best = min(_reference_tour(list(p)) for p in itertools.permutations(bins))
    assert plan_walk(bins).distance_m <= best * 1.10 + 0.01
