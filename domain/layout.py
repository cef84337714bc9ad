"""Warehouse layout and the picker's walk: which bin to visit first, and how far it is.

A bin code is `ZONE-AISLE-BAY-LEVEL`, e.g. `A-03-2-B`: zone letters, aisle number, bay number
(counted from the front cross-aisle), level letter (A = floor). The legacy `A-01-02` style
(no level) is read the same way. A code that does not parse, or that names aisle or bay 0
(the old default `A-00-00`: "nowhere yet"), is *unlocated*: it goes at the end of the walk,
by code, and counts no metres.

The floor is modelled as the classic single-block warehouse: parallel walking aisles, one
per aisle number, joined by a front and a back cross-aisle. Zones sit side by side along
the front cross-aisle. The picker starts at the depot (the pack station, on the front
cross-aisle) and comes back to it. Levels are vertical: they cost no walking.

    x of an aisle = zone origin + (aisle - 1) * aisle_spacing_m
    y of a bay    = (bay - 0.5) * bay_width_m        (0 = front cross-aisle)

Distances are shortest paths on that ladder: inside one aisle |dy|; between aisles |dx| plus
the shorter way round, via the front or via the back cross-aisle.

The walk is the shortest of several deterministic candidates, so it is never longer than
the naive sort-by-code walk (which is one of them): the per-aisle choice (each aisle is
entered from the front or the back, picked nearest-first, and left by whichever cross-aisle
is shorter; a dynamic programme picks the best entry side per aisle, aisles left to right
and right to left, which includes the serpentine S-shape walk), the largest-gap walk, then
2-opt improvement of the best one.

A site describes its own floor with a `Layout` (settings: `ORDERFLOW_WAREHOUSE_LAYOUT` as
JSON, e.g. `{"aisle_spacing_m": 3.5, "zones": {"A": 0, "B": 42}}`); callers pass it as the
second argument of `plan_walk`. Pure and deterministic: safe in workflows and activities.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints

from domain.base import Model

_CODE = re.compile(r"^([A-Z]{1,3})-(\d{1,4})-(\d{1,4})(?:-([A-Z]{1,2}))?$")

Metres = Annotated[float, Field(gt=0, le=1000)]
ZoneCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,3}$")]

# 2-opt is quadratic per pass: bounded so a huge wave still plans in milliseconds.
_TWO_OPT_MAX_STOPS = 120
_TWO_OPT_MAX_PASSES = 20


class Layout(Model):
    """How a site's floor is laid out; every field has a documented default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Centre to centre of two neighbouring walking aisles (rack, aisle, rack).
    aisle_spacing_m: Metres = 3.0
    # Width of one bay along the aisle.
    bay_width_m: Metres = 1.2
    # Bays in an aisle: the back cross-aisle lies behind the last one (a higher bay number
    # in a code lengthens the aisles rather than failing).
    bays_per_aisle: int = Field(default=20, ge=1, le=500)
    # x of aisle 1 of each zone, when a zone is not in `zones`: its index (A=0, B=1, ...)
    # times this.
    zone_offset_m: Metres = 30.0
    # Explicit x origin (metres) of aisle 1 per zone letter; overrides zone_offset_m.
    zones: dict[ZoneCode, Annotated[float, Field(ge=0, le=100_000)]] = {}
    # Where the depot (pack station) sits along the front cross-aisle.
    depot_x_m: Annotated[float, Field(ge=0, le=100_000)] = 0.0


DEFAULT_LAYOUT = Layout()


@dataclass(frozen=True)
class Walk:
    """Indices of the bins in walking order, the walk's metres and the by-code walk's."""

    order: list[int]
    distance_m: float
    by_code_m: float

    @property
    def saved_pct(self) -> float:
        """How much shorter than walking in code order, in percent (0 when nothing to walk)."""
        if self.by_code_m <= 0:
            return 0.0
        return round(100.0 * (self.by_code_m - self.distance_m) / self.by_code_m, 1)


@dataclass(frozen=True)
class BinLocation:
    zone: str
    aisle: int
    bay: int
    level: str


def parse_bin(code: str) -> BinLocation | None:
    """The parts of a bin code, or None when it is unlocated (unparseable, aisle/bay 0)."""
    m = _CODE.match(code.strip().upper())
    if m is None:
        return None
    zone, aisle, bay, level = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4) or ""
    if aisle == 0 or bay == 0:
        return None
    return BinLocation(zone=zone, aisle=aisle, bay=bay, level=level)


def _zone_index(zone: str) -> int:
    """A=0 .. Z=25, AA=26, ... (bijective base 26)."""
    n = 0
    for ch in zone:
        n = n * 26 + (ord(ch) - ord("A") + 1)
    return n - 1


@dataclass(frozen=True)
class _Stop:
    index: int
    code: str
    x: float
    y: float
    level: str


Point = tuple[float, float]


class _Floor:
    """Geometry of one walk: aisle length fixed by the layout and the deepest bay asked for."""

    def __init__(self, layout: Layout, deepest_bay: int) -> None:
        self.layout = layout
        self.length = max(layout.bays_per_aisle, deepest_bay) * layout.bay_width_m
        self.depot: Point = (layout.depot_x_m, 0.0)

    def place(self, loc: BinLocation) -> Point:
        lay = self.layout
        origin = lay.zones.get(loc.zone)
        if origin is None:
            origin = _zone_index(loc.zone) * lay.zone_offset_m
        return origin + (loc.aisle - 1) * lay.aisle_spacing_m, (loc.bay - 0.5) * lay.bay_width_m

    def dist(self, a: Point, b: Point) -> float:
        if a[0] == b[0]:
            return abs(a[1] - b[1])
        return abs(a[0] - b[0]) + min(a[1] + b[1], 2 * self.length - a[1] - b[1])

    def tour(self, stops: list[_Stop]) -> float:
        """Metres from the depot through the stops in this order and back."""
        total, here = 0.0, self.depot
        for s in stops:
            total += self.dist(here, (s.x, s.y))
            here = (s.x, s.y)
        return total + self.dist(here, self.depot)


def _aisles(stops: list[_Stop]) -> list[list[_Stop]]:
    """Stops grouped by aisle (x), aisles left to right, each front to back."""
    by_x: dict[float, list[_Stop]] = {}
    for s in stops:
        by_x.setdefault(s.x, []).append(s)
    return [sorted(by_x[x], key=lambda s: (s.y, s.level, s.code, s.index)) for x in sorted(by_x)]


def _per_aisle(floor: _Floor, aisles: list[list[_Stop]]) -> list[_Stop]:
    """Aisles in the given order; per aisle the best entry side (front: ascending), by DP."""
    # best[side] = (metres so far, route) having finished the aisle entered from `side`.
    best: dict[str, tuple[float, list[_Stop]]] = {"start": (0.0, [])}
    for aisle in aisles:
        ways = {"front": aisle, "back": aisle[::-1]}
        nxt: dict[str, tuple[float, list[_Stop]]] = {}
        for side, seq in ways.items():
            inner = sum(floor.dist((a.x, a.y), (b.x, b.y)) for a, b in itertools.pairwise(seq))
            options = []
            for cost, route in best.values():
                here = (route[-1].x, route[-1].y) if route else floor.depot
                options.append((cost + floor.dist(here, (seq[0].x, seq[0].y)) + inner, route))
            cost, route = min(options, key=lambda o: o[0])
            nxt[side] = (cost, route + seq)
        best = nxt
    return min(
        best.values(),
        key=lambda o: (
            o[0] + floor.dist((o[1][-1].x, o[1][-1].y) if o[1] else floor.depot, floor.depot)
        ),
    )[1]


def _largest_gap(floor: _Floor, aisles: list[list[_Stop]]) -> list[_Stop]:
    """First and last aisle walked through; the others entered from the front and from the
    back, never crossing their largest gap between picks."""
    if len(aisles) < 2:
        return [s for a in aisles for s in a]
    front: list[list[_Stop]] = []
    back: list[list[_Stop]] = []
    for aisle in aisles[1:-1]:
        ys = [0.0] + [s.y for s in aisle] + [floor.length]
        gaps = [ys[i + 1] - ys[i] for i in range(len(ys) - 1)]
        cut = gaps.index(max(gaps))  # stops before the cut are reached from the front
        front.append(aisle[:cut])
        back.append(aisle[cut:][::-1])
    out = list(aisles[0])
    for part in back:
        out += part
    out += aisles[-1][::-1]
    for part in reversed(front):
        out += part[::-1]
    return out


def _two_opt(floor: _Floor, route: list[_Stop]) -> list[_Stop]:
    """Reverse segments while that shortens the tour (bounded, deterministic)."""
    n = len(route)
    if n < 3 or n > _TWO_OPT_MAX_STOPS:
        return route
    pts = [floor.depot] + [(s.x, s.y) for s in route] + [floor.depot]
    seq = list(route)
    for _ in range(_TWO_OPT_MAX_PASSES):
        improved = False
        for i in range(1, n):
            for j in range(i + 1, n + 1):
                a, b, c, d = pts[i - 1], pts[i], pts[j], pts[j + 1]
                delta = floor.dist(a, c) + floor.dist(b, d) - floor.dist(a, b) - floor.dist(c, d)
                if delta < -1e-9:
                    pts[i : j + 1] = pts[i : j + 1][::-1]
                    seq[i - 1 : j] = seq[i - 1 : j][::-1]
                    improved = True
        if not improved:
            break
    return seq


def plan_walk(bins: list[str], layout: Layout | None = None) -> Walk:
    """The order to visit `bins` in (indices), its metres, and the sort-by-code walk's metres."""
    lay = layout or DEFAULT_LAYOUT
    located: list[tuple[int, str, BinLocation]] = []
    unlocated: list[int] = []
    for i, code in enumerate(bins):
        loc = parse_bin(code)
        if loc is None:
            unlocated.append(i)
        else:
            located.append((i, code, loc))
    floor = _Floor(lay, max((loc.bay for _, _, loc in located), default=0))
    stops = [
        _Stop(index=i, code=code, level=loc.level, x=p[0], y=p[1])
        for i, code, loc in located
        for p in [floor.place(loc)]
    ]
    by_code = sorted(stops, key=lambda s: (s.code, s.index))
    aisles = _aisles(stops)
    candidates = [
        _per_aisle(floor, aisles),
        _per_aisle(floor, aisles[::-1]),
        _largest_gap(floor, aisles),
        by_code,
    ]
    # The shortest wins; on a tie the earlier one (the number-aware walks before by-code).
    best = min(candidates, key=floor.tour)
    best = _two_opt(floor, best)
    tail = sorted(unlocated, key=lambda i: (bins[i], i))
    return Walk(
        order=[s.index for s in best] + tail,
        distance_m=round(floor.tour(best), 2),
        by_code_m=round(floor.tour(by_code), 2),
    )
