"""The scenario datasets: the generator is deterministic, the loaders are typed and strict, the geometry is right."""

from __future__ import annotations

import datetime
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.errors import ConfigError
from labkit.scenarios import data
from labkit.scenarios.data import Waypoint, bearing_deg, haversine_m, interpolate, route_length_m

ROOT = Path(__file__).resolve().parents[1]
GENERATE = ROOT / "data" / "generate.py"
FILES = ("routes.csv", "flights.csv", "symbols.csv", "sensors.csv", "vitals.csv", "products.csv")


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GENERATE), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def _default_data_dir(monkeypatch):
    """Every test reads the committed data/ unless it points LABKIT_DATA elsewhere itself."""
    monkeypatch.delenv(data.DATA_ENV, raising=False)


@pytest.fixture
def data_copy(tmp_path, monkeypatch) -> Path:
    """A private copy of the six files, loaded through LABKIT_DATA."""
    for name in FILES:
        shutil.copy(ROOT / "data" / name, tmp_path / name)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    return tmp_path


# ----------------------------------------------------------------------------- generator

def test_committed_files_are_what_the_generator_writes():
    done = _generate("--check")
    assert done.returncode == 0, done.stderr
    assert "match seed 20261128" in done.stdout


def test_check_names_the_file_that_differs(data_copy):
    path = data_copy / "products.csv"
    path.write_text(path.read_text().replace("SKU-0001", "SKU-9999"))
    done = _generate("--check", "--out", str(data_copy))
    assert done.returncode == 1
    assert "products.csv" in done.stderr and "routes.csv" not in done.stderr
    assert "python data/generate.py" in done.stderr


def test_another_seed_gives_other_files_and_reruns_are_identical(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert _generate("--seed", "7", "--out", str(first)).returncode == 0
    assert _generate("--seed", "7", "--out", str(second)).returncode == 0
    for name in FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
        assert (first / name).read_bytes() != (ROOT / "data" / name).read_bytes(), name
    assert _generate("--seed", "7", "--check", "--out", str(first)).returncode == 0


def test_files_are_small():
    for name in FILES:
        assert (ROOT / "data" / name).stat().st_size < 200_000, name


# ----------------------------------------------------------------------------- loaders

def test_routes_are_40_closed_loops_with_street_sized_steps():
    loops = data.routes()
    assert sorted(loops) == [f"R{i:02d}" for i in range(1, 41)]
    for rid, loop in loops.items():
        assert isinstance(loop, tuple) and all(type(p) is Waypoint for p in loop)
        assert 30 <= len(loop) <= 80, rid
        assert loop[0] != loop[-1], f"{rid}: the start must not be repeated at the end"
        # closed: the leg from the last waypoint back to the first is a street step like the others
        legs = [haversine_m(loop[i - 1], loop[i]) for i in range(len(loop))]
        assert all(50 <= leg <= 500 for leg in legs), (rid, min(legs), max(legs))
        assert all(45.70 < p.lat < 45.82 and 4.78 < p.lon < 4.95 for p in loop), rid  # around Lyon


def test_flights_are_a_day_of_departures():
    rows = data.flights()
    assert len(rows) == 120
    assert len({f.flight for f in rows}) == 120
    assert len({f.destination for f in rows}) >= 30
    times = [f.scheduled_dep_utc for f in rows]
    assert all(isinstance(t, datetime.time) for t in times) and times == sorted(times)
    for f in rows:
        assert 0 <= f.delay_prob <= 1 and 0 <= f.gate_change_prob <= 1 and f.typical_delay_min > 0
        assert f.dep_minute_utc == f.scheduled_dep_utc.hour * 60 + f.scheduled_dep_utc.minute
        assert (f.lat, f.lon) == (45.7256, 5.0811)  # LYS
        assert 100_000 < haversine_m(f.origin, f.dest) < 7_000_000, f.destination
    far = {f.destination for f in rows if f.aircraft in ("A330-900", "B787-9")}
    assert far == {"DXB", "YUL"}  # wide-bodies fly the long-haul routes only


def test_symbols_cover_three_venues_and_fx():
    rows = data.symbols()
    equities = [s for s in rows if s.asset_class == "equity"]
    fx = [s for s in rows if s.asset_class == "fx"]
    assert len(equities) == 24 and len(fx) == 8
    assert {s.venue for s in equities} == {"XNAS", "XNYS", "XLON"}
    assert {s.venue for s in fx} == {"FX"} and "EURUSD" in {s.symbol for s in fx}
    assert len({s.symbol for s in rows}) == len(rows)
    for s in rows:
        assert isinstance(s.lot_size, int) and s.lot_size >= 1
        assert 0 < s.volatility_annual < 1 and s.tick_size > 0
        ticks = s.start_price / s.tick_size
        assert ticks == pytest.approx(round(ticks), abs=1e-6), s.symbol  # the price sits on the tick grid


def test_sensor_profiles_are_consistent():
    rows = data.sensors()
    assert len(rows) == 20 and len({s.room for s in rows}) == 6
    units = {"temperature": "degC", "humidity": "%RH", "air_quality": "ppm", "light": "lux"}
    for s in rows:
        assert s.unit == units[s.kind] and s.interval_s > 0 and s.stddev > 0
        assert s.min < s.mean < s.alert_above <= s.max, s.sensor_id


def test_vital_profiles_are_consistent():
    rows = data.vitals()
    assert len(rows) == 40 and len({v.patient_id for v in rows}) == 10
    for v in rows:
        assert v.low_alert < v.mean < v.high_alert and v.stddev > 0 and v.interval_s > 0, (v.patient_id, v.vital)


def test_products_are_a_catalogue():
    rows = data.products()
    assert len(rows) == 60 and len({p.sku for p in rows}) == 60 and len({p.name for p in rows}) == 60
    for p in rows:
        assert isinstance(p.stock, int) and isinstance(p.restock_qty, int)
        assert p.price > 0 and p.stock >= 0 and p.restock_qty > 0 and p.demand_per_min > 0
        assert 0 <= p.price_change_prob <= 1


def test_loads_are_cached_and_immutable():
    assert data.flights() is data.flights()
    assert data.routes() is data.routes()
    with pytest.raises(TypeError):
        data.routes()["R01"] = ()  # type: ignore[index]
    with pytest.raises(AttributeError):
        data.products()[0].price = 0.0  # type: ignore[misc]


def test_data_dir_is_the_repository_data_folder():
    assert data.data_dir() == ROOT / "data"


# ----------------------------------------------------------------------------- bad data

def test_missing_file_names_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"flights\.csv.*python data/generate\.py"):
        data.flights()


def test_missing_folder_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="LABKIT_DATA"):
        data.sensors()


def test_wrong_column_names_the_file_and_the_column(data_copy):
    path = data_copy / "vitals.csv"
    path.write_text(path.read_text().replace("high_alert", "hi_alert", 1))
    with pytest.raises(ConfigError, match=r"vitals\.csv.*high_alert.*python data/generate\.py"):
        data.vitals()


def test_bad_value_names_the_line_and_the_column(data_copy):
    path = data_copy / "products.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace(lines[3].split(",")[3], "cheap", 1)
    path.write_text("".join(lines))
    with pytest.raises(ConfigError, match=r"products\.csv, line 4: column price has 'cheap'"):
        data.products()


def test_unknown_kind_is_refused(data_copy):
    path = data_copy / "sensors.csv"
    path.write_text(path.read_text().replace(",light,", ",sound,", 1))
    with pytest.raises(ConfigError, match=r"sensors\.csv.*sound.*temperature"):
        data.sensors()


def test_route_steps_must_count_from_zero(data_copy):
    path = data_copy / "routes.csv"
    lines = path.read_text().splitlines(keepends=True)
    del lines[3]  # R01 step 2
    path.write_text("".join(lines))
    with pytest.raises(ConfigError, match=r"routes\.csv, line 4: route R01 has step 3 where step 2 was due"):
        data.routes()


def test_an_edited_file_is_read_again(data_copy):
    before = data.products()
    path = data_copy / "products.csv"
    path.write_text(path.read_text().replace("SKU-0001", "SKU-9999") + "\n")  # new size, so a new cache key
    after = data.products()
    assert before[0].sku == "SKU-0001" and after[0].sku == "SKU-9999"


# ----------------------------------------------------------------------------- geometry

PARIS, LONDON = Waypoint(48.8566, 2.3522), Waypoint(51.5074, -0.1278)


def test_haversine_paris_london():
    # by hand: dlat = 2.6508 deg, dlon = -2.48 deg; h = sin^2(dlat/2) + cos(48.8566) cos(51.5074) sin^2(dlon/2)
    # = 0.00053502 + 0.65795 * 0.62241 * 0.00046831 = 0.00072680; d = 2 R asin(sqrt(h)) = 343.56 km (R 6371 km)
    assert haversine_m(PARIS, LONDON) == pytest.approx(343_560, abs=100)
    assert haversine_m(LONDON, PARIS) == haversine_m(PARIS, LONDON)
    assert haversine_m(PARIS, PARIS) == 0.0


def test_haversine_one_degree_of_latitude():
    expected = data.EARTH_RADIUS_M * math.pi / 180  # 111,194.9 m along a meridian
    assert haversine_m(Waypoint(10.0, 7.0), Waypoint(11.0, 7.0)) == pytest.approx(expected, rel=1e-12)
    assert haversine_m(Waypoint(0.0, 0.0), Waypoint(0.0, 180.0)) == pytest.approx(math.pi * data.EARTH_RADIUS_M)


def test_bearing_points_the_right_way():
    origin = Waypoint(0.0, 0.0)
    assert bearing_deg(origin, Waypoint(1.0, 0.0)) == pytest.approx(0.0)
    assert bearing_deg(origin, Waypoint(0.0, 1.0)) == pytest.approx(90.0)
    assert bearing_deg(origin, Waypoint(-1.0, 0.0)) == pytest.approx(180.0)
    assert bearing_deg(origin, Waypoint(0.0, -1.0)) == pytest.approx(270.0)
    assert bearing_deg(PARIS, LONDON) == pytest.approx(330.0, abs=1.0)  # north-north-west


# a square of 0.001 degree sides on the equator: each side ~111.19 m
SQUARE = (Waypoint(0.0, 0.0), Waypoint(0.0, 0.001), Waypoint(0.001, 0.001), Waypoint(0.001, 0.0))
SIDE_M = data.EARTH_RADIUS_M * math.radians(0.001)


def _close(a: Waypoint, b: Waypoint) -> bool:
    return haversine_m(a, b) < 0.01  # within 1 cm


def test_interpolate_walks_the_legs():
    assert route_length_m(SQUARE) == pytest.approx(4 * SIDE_M, rel=1e-6)
    assert interpolate(SQUARE, 0.0) == SQUARE[0]
    assert _close(interpolate(SQUARE, SIDE_M / 2), Waypoint(0.0, 0.0005))
    assert _close(interpolate(SQUARE, SIDE_M), SQUARE[1])
    assert _close(interpolate(SQUARE, 2.5 * SIDE_M), Waypoint(0.001, 0.0005))
    assert _close(interpolate(SQUARE, 3.5 * SIDE_M), Waypoint(0.0005, 0.0))  # the closing leg back to the start


def test_interpolate_wraps_around():
    length = route_length_m(SQUARE)
    assert _close(interpolate(SQUARE, length), SQUARE[0])
    assert _close(interpolate(SQUARE, 3 * length + SIDE_M / 2), Waypoint(0.0, 0.0005))
    assert _close(interpolate(SQUARE, -SIDE_M / 2), Waypoint(0.0005, 0.0))  # backwards from the start
    assert _close(interpolate(list(SQUARE), length + SIDE_M), SQUARE[1])  # a list works too


def test_interpolate_on_a_real_route_stays_on_it():
    loop = data.routes()["R01"]
    length = route_length_m(loop)
    for k in range(20):
        here = interpolate(loop, k * length / 20)
        nearest = min(haversine_m(here, p) for p in loop)
        assert nearest <= 250, k  # legs are at most ~360 m, so a point on one is near a waypoint


def test_interpolate_refuses_an_empty_route_and_bad_distances():
    with pytest.raises(ConfigError, match="route has no waypoints"):
        interpolate((), 10.0)
    with pytest.raises(ConfigError, match="distance_m"):
        interpolate(SQUARE, math.nan)
    assert interpolate((PARIS,), 123.0) == PARIS
