"""The scenario datasets (``data/*.csv``) as typed, immutable rows, and the geometry scenarios need.

Standard library only: scenarios run in small worker processes that should not
import pandas. Each loader reads one file, checks its header and every value,
and returns frozen dataclasses in a tuple (one per CSV row, in file order)::

    routes()   -> Mapping[str, tuple[Waypoint, ...]]   # route_id -> closed loop of waypoints
    flights()  -> tuple[Flight, ...]
    symbols()  -> tuple[Symbol, ...]
    sensors()  -> tuple[SensorProfile, ...]
    vitals()   -> tuple[VitalProfile, ...]
    products() -> tuple[Product, ...]

Files come from :func:`data_dir` (the repository's ``data/`` folder, or the
folder named by the environment variable ``LABKIT_DATA``). Loads are cached per
file path, modification time and size, so a regenerated file is read again.
A missing file, a wrong header or a bad value raises
:class:`~labkit.errors.ConfigError` naming the file and the fix
(``python data/generate.py``). ``data/README.md`` documents every column.

Geometry on a sphere of radius :data:`EARTH_RADIUS_M`: :func:`haversine_m`
(metres), :func:`bearing_deg` (degrees clockwise from north),
:func:`route_length_m` and :func:`interpolate` (a position along a closed route).
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime
import functools
import logging
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError

__all__ = [
    "Waypoint", "Flight", "Symbol", "SensorProfile", "VitalProfile", "Product",
    "data_dir", "routes", "flights", "symbols", "sensors", "vitals", "products",
    "haversine_m", "bearing_deg", "route_length_m", "interpolate",
    "EARTH_RADIUS_M", "DATA_ENV", "REGENERATE",
]

log = logging.getLogger(__name__)

#: Mean Earth radius (m) used by every distance here and by ``data/generate.py``.
EARTH_RADIUS_M = 6_371_000.0
#: Environment variable that points the loaders at another folder of CSV files.
DATA_ENV = "LABKIT_DATA"
#: The command that writes the datasets, quoted in every error.
REGENERATE = "python data/generate.py"

SENSOR_KINDS = ("temperature", "humidity", "air_quality", "light")
VITAL_KINDS = ("heart_rate", "spo2", "systolic_bp", "temperature")
ASSET_CLASSES = ("equity", "fx")


@dataclasses.dataclass(frozen=True, slots=True)
class Waypoint:
    """A point on the Earth: latitude and longitude in decimal degrees (WGS 84)."""

    lat: float
    lon: float


@dataclasses.dataclass(frozen=True, slots=True)
class Flight:
    """One departure of the day (``flights.csv``); probabilities in [0, 1], times in UTC."""

    flight: str
    airline: str
    destination: str  # IATA airport code
    scheduled_dep_utc: datetime.time
    gate: str
    aircraft: str
    delay_prob: float  # chance the departure is late
    typical_delay_min: int  # min, mean delay when it is late
    gate_change_prob: float  # chance the gate changes before boarding
    lat: float  # degrees, origin airport
    lon: float
    dest_lat: float  # degrees, destination airport
    dest_lon: float

    @property
    def dep_minute_utc(self) -> int:
        """Scheduled departure in minutes after midnight UTC."""
        return self.scheduled_dep_utc.hour * 60 + self.scheduled_dep_utc.minute

    @property
    def origin(self) -> Waypoint:
        return Waypoint(self.lat, self.lon)

    @property
    def dest(self) -> Waypoint:
        return Waypoint(self.dest_lat, self.dest_lon)


@dataclasses.dataclass(frozen=True, slots=True)
class Symbol:
    """A tradeable instrument (``symbols.csv``); prices in USD, GBX (pence, on XLON) or the FX quote currency."""

    symbol: str
    venue: str  # XNAS, XNYS, XLON or FX
    asset_class: str  # "equity" or "fx"
    start_price: float
    volatility_annual: float  # annualised volatility of log returns (0.25 = 25 %)
    tick_size: float  # smallest price step, in price units
    lot_size: int  # units per order lot (shares, or base currency for FX)


@dataclasses.dataclass(frozen=True, slots=True)
class SensorProfile:
    """How one smart-home sensor behaves (``sensors.csv``); values in ``unit``."""

    sensor_id: str
    room: str
    kind: str  # temperature, humidity, air_quality or light
    unit: str  # degC, %RH, ppm (CO2) or lux
    interval_s: float  # s between readings
    mean: float
    stddev: float
    min: float  # physical floor: readings are clamped to [min, max]
    max: float
    alert_above: float  # a reading above this raises an alert


@dataclasses.dataclass(frozen=True, slots=True)
class VitalProfile:
    """One vital sign of one patient's wearable (``vitals.csv``); values in ``unit``."""

    patient_id: str
    vital: str  # heart_rate, spo2, systolic_bp or temperature
    unit: str  # bpm, %, mmHg or degC
    interval_s: float  # s between readings
    mean: float
    stddev: float
    low_alert: float  # a reading below this raises an alert
    high_alert: float  # a reading above this raises an alert


@dataclasses.dataclass(frozen=True, slots=True)
class Product:
    """One item of the shop catalogue (``products.csv``); prices in EUR."""

    sku: str
    name: str
    category: str
    price: float  # EUR
    stock: int  # units on hand at the start
    restock_qty: int  # units added per restock
    demand_per_min: float  # mean orders per minute (Poisson rate)
    price_change_prob: float  # chance per minute that the price changes


# ----------------------------------------------------------------------------- files

def data_dir() -> Path:
    """The folder holding the scenario CSVs: ``$LABKIT_DATA`` when set, else the repository's ``data/``."""
    override = os.environ.get(DATA_ENV)
    if override:
        folder = Path(override).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"{DATA_ENV}={override!r} is not a folder; unset it, or write the datasets there "
                              f"with `{REGENERATE} --out {override}`")
        return folder
    return Path(__file__).resolve().parents[2] / "data"


def _file(name: str) -> tuple[str, int, int]:
    """``(path, mtime_ns, size)`` of one dataset: the cache key, so an edited file is read again."""
    path = data_dir() / name
    try:
        st = path.stat()
    except OSError:
        raise ConfigError(f"scenario dataset {path} is missing; write it with `{REGENERATE}` "
                          f"(or point {DATA_ENV} at a folder that has it)") from None
    return str(path), st.st_mtime_ns, st.st_size


def _bad(path: str, line: int, why: str) -> ConfigError:
    return ConfigError(f"{path}, line {line}: {why}; rewrite the file with `{REGENERATE}`")


def _rows(path: str, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` for every data row, after checking the header is exactly ``columns``."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        if header != list(columns):
            missing = [c for c in columns if c not in header]
            extra = [c for c in header if c not in columns]
            why = (f"missing column(s) {', '.join(missing)}" if missing
                   else f"unexpected column(s) {', '.join(extra)}" if extra else "columns in the wrong order")
            raise _bad(path, 1, f"{why} (expected {','.join(columns)})")
        rows = []
        for row in reader:
            if None in row or None in row.values():
                raise _bad(path, reader.line_num, f"expected {len(columns)} fields")
            rows.append((reader.line_num, row))
    if not rows:
        raise _bad(path, 2, "no data rows")
    return rows


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _hhmm(text: str) -> datetime.time:
    if len(text) != 5 or text[2] != ":":
        raise ValueError("not HH:MM")
    return datetime.time(int(text[:2]), int(text[3:]))


_PARSERS = {str: str, float: _finite, int: int, datetime.time: _hhmm}
_Row = TypeVar("_Row")


def _load(cls: type[_Row], key: tuple[str, int, int]) -> tuple[_Row, ...]:
    """Every row of the file ``key[0]`` as a ``cls``: the dataclass's fields are the file's columns, in order."""
    path = key[0]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    out = []
    for line, row in _rows(path, names):
        values: dict[str, Any] = {}
        for column in names:
            try:
                values[column] = _PARSERS[hints[column]](row[column])
            except ValueError:
                raise _bad(path, line, f"column {column} has {row[column]!r}, "
                                       f"not a {hints[column].__name__}") from None
        out.append(cls(**values))
    log.debug("loaded %d rows from %s", len(out), path)
    return tuple(out)


def _check_choice(path: str, rows: Sequence[Any], column: str, allowed: Sequence[str]) -> None:
    for i, row in enumerate(rows):
        if getattr(row, column) not in allowed:
            raise _bad(path, i + 2, f"column {column} has {getattr(row, column)!r}, not one of {', '.join(allowed)}")


@functools.lru_cache(maxsize=16)
def _flights(key: tuple[str, int, int]) -> tuple[Flight, ...]:
    return _load(Flight, key)


@functools.lru_cache(maxsize=16)
def _symbols(key: tuple[str, int, int]) -> tuple[Symbol, ...]:
    rows = _load(Symbol, key)
    _check_choice(key[0], rows, "asset_class", ASSET_CLASSES)
    return rows


@functools.lru_cache(maxsize=16)
def _sensors(key: tuple[str, int, int]) -> tuple[SensorProfile, ...]:
    rows = _load(SensorProfile, key)
    _check_choice(key[0], rows, "kind", SENSOR_KINDS)
    return rows


@functools.lru_cache(maxsize=16)
def _vitals(key: tuple[str, int, int]) -> tuple[VitalProfile, ...]:
    rows = _load(VitalProfile, key)
    _check_choice(key[0], rows, "vital", VITAL_KINDS)
    return rows


@functools.lru_cache(maxsize=16)
def _products(key: tuple[str, int, int]) -> tuple[Product, ...]:
    return _load(Product, key)


@functools.lru_cache(maxsize=16)
def _routes(key: tuple[str, int, int]) -> Mapping[str, tuple[Waypoint, ...]]:
    path = key[0]
    loops: dict[str, list[Waypoint]] = {}
    for line, row in _rows(path, ("route_id", "step", "lat", "lon")):
        try:
            step, point = int(row["step"]), Waypoint(_finite(row["lat"]), _finite(row["lon"]))
        except ValueError:
            raise _bad(path, line, f"step, lat, lon must be numbers, got {row['step']!r}, {row['lat']!r}, "
                                   f"{row['lon']!r}") from None
        loop = loops.setdefault(row["route_id"], [])
        if step != len(loop):
            raise _bad(path, line, f"route {row['route_id']} has step {step} where step {len(loop)} was due "
                                   "(rows must be sorted by route_id, step, counting from 0)")
        loop.append(point)
    log.debug("loaded %d routes from %s", len(loops), path)
    return types.MappingProxyType({rid: tuple(points) for rid, points in loops.items()})


def routes() -> Mapping[str, tuple[Waypoint, ...]]:
    """Vehicle routes (``routes.csv``): route_id -> its waypoints; each route is a closed loop (the last
    waypoint drives back to the first, which is not repeated). Read-only mapping, cached."""
    return _routes(_file("routes.csv"))


def flights() -> tuple[Flight, ...]:
    """A day of departures (``flights.csv``), sorted by scheduled time. Cached."""
    return _flights(_file("flights.csv"))


def symbols() -> tuple[Symbol, ...]:
    """Tradeable instruments (``symbols.csv``), sorted by venue then symbol. Cached."""
    return _symbols(_file("symbols.csv"))


def sensors() -> tuple[SensorProfile, ...]:
    """Smart-home sensor profiles (``sensors.csv``), sorted by sensor_id. Cached."""
    return _sensors(_file("sensors.csv"))


def vitals() -> tuple[VitalProfile, ...]:
    """Wearable vital-sign profiles (``vitals.csv``), sorted by patient then vital. Cached."""
    return _vitals(_file("vitals.csv"))


def products() -> tuple[Product, ...]:
    """The shop catalogue (``products.csv``), sorted by sku. Cached."""
    return _products(_file("products.csv"))


# ----------------------------------------------------------------------------- geometry

def haversine_m(a: Waypoint, b: Waypoint) -> float:
    """Great-circle distance between two points, in metres."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(a: Waypoint, b: Waypoint) -> float:
    """Initial great-circle bearing from ``a`` to ``b``, in degrees clockwise from north, in [0, 360)."""
    p1, p2, dl = math.radians(a.lat), math.radians(b.lat), math.radians(b.lon - a.lon)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


@functools.lru_cache(maxsize=256)
def _cumulative(route: tuple[Waypoint, ...]) -> tuple[float, ...]:
    """Distance (m) from the start to each waypoint, then back to the start: len(route) + 1 values."""
    out, total = [0.0], 0.0
    for i in range(len(route)):
        total += haversine_m(route[i], route[(i + 1) % len(route)])
        out.append(total)
    return tuple(out)


def _as_route(route: Sequence[Waypoint]) -> tuple[Waypoint, ...]:
    if not route:
        raise ConfigError("route has no waypoints; pass at least one Waypoint (e.g. a value of routes())")
    return route if isinstance(route, tuple) else tuple(route)


def route_length_m(route: Sequence[Waypoint]) -> float:
    """Length of a closed route in metres, the leg from the last waypoint back to the first included."""
    return _cumulative(_as_route(route))[-1]


def interpolate(route: Sequence[Waypoint], distance_m: float) -> Waypoint:
    """Where a vehicle is after driving ``distance_m`` metres along a closed route from its first waypoint.

    The route is a loop: distances wrap around its length (so ``route_length_m(route) + d`` is the same
    place as ``d``, and a negative distance drives backwards). Within a leg the position is
    interpolated linearly in latitude and longitude, which is exact enough for legs of a few hundred metres.
    """
    loop = _as_route(route)
    if not math.isfinite(distance_m):
        raise ConfigError(f"distance_m={distance_m!r} is not a finite number of metres; pass a float")
    cum = _cumulative(loop)
    total = cum[-1]
    if total == 0.0:
        return loop[0]
    d = distance_m % total
    i = min(bisect.bisect_right(cum, d) - 1, len(loop) - 1)  # the leg from loop[i] to loop[i + 1]
    a, b = loop[i], loop[(i + 1) % len(loop)]
    leg = cum[i + 1] - cum[i]
    f = (d - cum[i]) / leg if leg > 0 else 0.0
    return Waypoint(a.lat + (b.lat - a.lat) * f, a.lon + (b.lon - a.lon) * f)
