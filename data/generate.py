"""Write labkit's scenario datasets: six small CSV files, the same bytes on every run.

Usage (from the repository root)::

    python data/generate.py                 # rewrite data/*.csv with the default seed
    python data/generate.py --seed 7        # another, equally valid, set of files
    python data/generate.py --out /tmp/d    # write somewhere else
    python data/generate.py --check         # regenerate in a temporary folder and compare;
                                            # exit 1 naming every file that differs

Standard library only. Each file draws from its own ``random.Random`` seeded with
``"{seed}:{file name}"``, so changing one generator leaves the other files as they
are. Rows are sorted and every float is written with a fixed number of decimals,
so the output depends on the seed alone. All values are invented, except the
airport codes and coordinates (public facts). ``data/README.md`` documents each
column with its unit.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import math
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

DEFAULT_SEED = 20261128
HERE = Path(__file__).resolve().parent

Row = Sequence[object]

# --------------------------------------------------------------------------------------------
# routes.csv: 40 closed delivery loops on a street grid around Lyon (Part-Dieu)

CITY_LAT, CITY_LON = 45.7605, 4.8590  # degrees: the middle of the fleet's area
EARTH_RADIUS_M = 6_371_000.0  # m, mean radius (the loaders use the same value)
BLOCK_X_M, BLOCK_Y_M = 140.0, 115.0  # m, one street block along and across the grid
GRID_ANGLE_DEG = 14.0  # the grid's streets are turned this far anticlockwise from east/north
MAX_STEP_M = 380.0  # m, longest straight step between two waypoints (before jitter)
JITTER_M = 6.0  # m, each waypoint moves up to this far off the grid corner
N_ROUTES = 40
MIN_WAYPOINTS, MAX_WAYPOINTS = 30, 80

Cell = tuple[int, int]
_STEPS = {(1, 0): "E", (0, 1): "N", (-1, 0): "W", (0, -1): "S"}


def _rectangle_union(rng: random.Random) -> set[Cell]:
    """2 to 4 overlapping rectangles of blocks: L, T and plus-shaped neighbourhoods."""
    cells: set[Cell] = set()
    for _ in range(rng.randint(2, 4)):
        w, h = rng.randint(2, 12), rng.randint(2, 14)
        if not cells:
            x0, y0 = 0, 0
        else:  # anchor the new rectangle on a block already inside, so the union stays connected
            ax, ay = rng.choice(sorted(cells))
            x0, y0 = ax - rng.randint(0, w - 1), ay - rng.randint(0, h - 1)
        cells.update((x, y) for x in range(x0, x0 + w) for y in range(y0, y0 + h))
    return _fill_holes(cells)


def _fill_holes(cells: set[Cell]) -> set[Cell]:
    """``cells`` plus every empty block the outside cannot reach (a courtyard is not a street)."""
    xs, ys = [x for x, _ in cells], [y for _, y in cells]
    x_lo, x_hi, y_lo, y_hi = min(xs) - 1, max(xs) + 1, min(ys) - 1, max(ys) + 1
    outside, todo = {(x_lo, y_lo)}, [(x_lo, y_lo)]
    while todo:
        x, y = todo.pop()
        for dx, dy in _STEPS:
            n = (x + dx, y + dy)
            if x_lo <= n[0] <= x_hi and y_lo <= n[1] <= y_hi and n not in cells and n not in outside:
                outside.add(n)
                todo.append(n)
    return {(x, y) for x in range(x_lo, x_hi + 1) for y in range(y_lo, y_hi + 1) if (x, y) not in outside}


def _boundary(cells: set[Cell]) -> list[str] | None:
    """The outline of ``cells`` as unit moves ("E", "N", ...) anticlockwise, starting at a corner.

    None when the outline touches itself at a corner (two blocks meeting diagonally):
    such a shape is drawn again.
    """
    edges: dict[Cell, Cell] = {}
    for x, y in cells:
        sides = (((x, y - 1), (x, y), (x + 1, y)), ((x + 1, y), (x + 1, y), (x + 1, y + 1)),
                 ((x, y + 1), (x + 1, y + 1), (x, y + 1)), ((x - 1, y), (x, y + 1), (x, y)))
        for neighbour, start, end in sides:
            if neighbour not in cells:
                if start in edges:
                    return None
                edges[start] = end
    start = min(edges)
    moves, here = [], start
    for _ in range(len(edges)):
        nxt = edges[here]
        moves.append(_STEPS[(nxt[0] - here[0], nxt[1] - here[1])])
        here = nxt
        if here == start:
            break
    if here != start or len(moves) != len(edges):
        return None
    turn = next(i for i in range(len(moves)) if moves[i] != moves[i - 1])
    return moves[turn:] + moves[:turn]


def _runs(moves: list[str]) -> list[tuple[str, int]]:
    runs: list[tuple[str, int]] = []
    for m in moves:
        if runs and runs[-1][0] == m:
            runs[-1] = (m, runs[-1][1] + 1)
        else:
            runs.append((m, 1))
    return runs


def _max_chunk(direction: str) -> int:
    return int(MAX_STEP_M // (BLOCK_X_M if direction in "EW" else BLOCK_Y_M))


def _waypoints(rng: random.Random) -> list[tuple[float, float]]:
    """One closed loop as grid metres (x east, y north along the grid), 30-80 corners and mid-block stops."""
    target = rng.randint(MIN_WAYPOINTS, MAX_WAYPOINTS)
    for _ in range(1000):  # draw shapes until one can be cut into exactly `target` steps
        moves = _boundary(_rectangle_union(rng))
        if moves is None:
            continue
        runs = _runs(moves)
        if sum(math.ceil(n / _max_chunk(d)) for d, n in runs) <= target <= len(moves):
            break
    else:
        raise RuntimeError(f"no street loop of {target} waypoints in 1000 tries; check the block sizes")
    parts = [math.ceil(n / _max_chunk(d)) for d, n in runs]
    while sum(parts) < target:  # split more runs into shorter steps, one at a time
        i = rng.choice([i for i, (_, n) in enumerate(runs) if parts[i] < n])
        parts[i] += 1
    points, x, y = [], 0.0, 0.0
    for (direction, n), k in zip(runs, parts):
        steps = [1] * k
        for _ in range(n - k):
            steps[rng.choice([i for i in range(k) if steps[i] < _max_chunk(direction)])] += 1
        dx, dy = {"E": (1, 0), "N": (0, 1), "W": (-1, 0), "S": (0, -1)}[direction]
        for s in steps:
            points.append((x, y))
            x, y = x + dx * s * BLOCK_X_M, y + dy * s * BLOCK_Y_M
    if rng.random() < 0.5:  # half the fleet drives its loop clockwise
        points = points[:1] + points[:0:-1]
    return points


def _to_lat_lon(x: float, y: float) -> tuple[float, float]:
    a = math.radians(GRID_ANGLE_DEG)
    east, north = x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)
    lat = CITY_LAT + math.degrees(north / EARTH_RADIUS_M)
    lon = CITY_LON + math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(CITY_LAT))))
    return lat, lon


def routes(rng: random.Random) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    for r in range(1, N_ROUTES + 1):
        ox, oy = rng.randint(-14, 10) * BLOCK_X_M, rng.randint(-16, 12) * BLOCK_Y_M
        for step, (x, y) in enumerate(_waypoints(rng)):
            jx, jy = rng.uniform(-JITTER_M, JITTER_M), rng.uniform(-JITTER_M, JITTER_M)
            lat, lon = _to_lat_lon(ox + x + jx, oy + y + jy)
            rows.append((f"R{r:02d}", step, f"{lat:.6f}", f"{lon:.6f}"))
    return ["route_id", "step", "lat", "lon"], rows


# --------------------------------------------------------------------------------------------
# flights.csv: one day of departures from Lyon Saint-Exupery (LYS)

ORIGIN = ("LYS", 45.7256, 5.0811)
# IATA code, latitude, longitude (degrees), departures per day
AIRPORTS = [
    ("CDG", 49.0097, 2.5479, 7), ("ORY", 48.7233, 2.3794, 5), ("AMS", 52.3105, 4.7683, 5),
    ("FRA", 50.0379, 8.5622, 5), ("MUC", 48.3538, 11.7861, 4), ("LHR", 51.4700, -0.4543, 5),
    ("LGW", 51.1537, -0.1821, 3), ("MAD", 40.4983, -3.5676, 4), ("BCN", 41.2974, 2.0833, 4),
    ("FCO", 41.8003, 12.2389, 4), ("LIS", 38.7813, -9.1359, 4), ("OPO", 41.2481, -8.6814, 3),
    ("BRU", 50.9014, 4.4844, 4), ("ZRH", 47.4582, 8.5555, 3), ("VIE", 48.1103, 16.5697, 3),
    ("CPH", 55.6180, 12.6508, 2), ("DUB", 53.4213, -6.2701, 3), ("ATH", 37.9364, 23.9445, 2),
    ("IST", 41.2753, 28.7519, 3), ("NCE", 43.6584, 7.2159, 5), ("TLS", 43.6291, 1.3638, 5),
    ("BOD", 44.8283, -0.7156, 5), ("NTE", 47.1532, -1.6107, 5), ("BES", 48.4479, -4.4185, 3),
    ("AJA", 41.9236, 8.8029, 3), ("BIA", 42.5527, 9.4837, 3), ("ALG", 36.6910, 3.2154, 3),
    ("TUN", 36.8510, 10.2272, 3), ("CMN", 33.3675, -7.5900, 3), ("PMI", 39.5517, 2.7388, 2),
    ("BER", 52.3667, 13.5033, 3), ("EDI", 55.9500, -3.3725, 2), ("DXB", 25.2532, 55.3657, 1),
    ("YUL", 45.4706, -73.7408, 1),
]
AIRLINES = [("RH", "Rhone Air"), ("AK", "Alpine Link"), ("SQ", "Saone Connect"), ("AZ", "Azur Jet"),
            ("AH", "Atlantic Hop"), ("BW", "Boreal Wings")]
GATES = [f"A{i}" for i in range(1, 19)] + [f"B{i}" for i in range(1, 15)] + [f"C{i}" for i in range(1, 9)]
FIRST_DEP_MIN, LAST_DEP_MIN = 4 * 60 + 30, 21 * 60 + 30  # minutes after midnight UTC


def _great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h)) / 1000


def _aircraft(rng: random.Random, km: float) -> str:
    if km > 3500:
        return rng.choice(["A330-900", "B787-9"])
    if km < 600:
        return rng.choice(["ATR72-600", "E190", "CRJ1000", "A319"])
    return rng.choice(["A319", "A320", "A320neo", "A321", "A220-300", "B737-800", "E195"])


def _departure_min(rng: random.Random) -> int:
    """A departure time with the morning and evening banks of a regional hub (min after 00:00 UTC)."""
    bank = rng.random()
    centre, spread = (6 * 60, 50) if bank < 0.4 else (11 * 60 + 30, 110) if bank < 0.7 else (16 * 60 + 30, 80)
    minute = int(round(rng.gauss(centre, spread) / 5) * 5)
    return min(max(minute, FIRST_DEP_MIN), LAST_DEP_MIN)


def flights(rng: random.Random) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    used: set[str] = set()
    for code, lat, lon, per_day in AIRPORTS:
        km = _great_circle_km(ORIGIN[1], ORIGIN[2], lat, lon)
        carrier, airline = rng.choice(AIRLINES)
        aircraft = _aircraft(rng, km)
        for _ in range(per_day):
            number = f"{carrier}{rng.randint(100, 9899)}"
            while number in used:
                number = f"{carrier}{rng.randint(100, 9899)}"
            used.add(number)
            dep = _departure_min(rng)
            late_in_day = (dep - FIRST_DEP_MIN) / (LAST_DEP_MIN - FIRST_DEP_MIN)  # delays pile up
            delay_prob = min(max(0.06 + 0.30 * late_in_day + rng.gauss(0, 0.05), 0.02), 0.6)
            typical = 8 + 30 * late_in_day + rng.uniform(0, 15) + (10 if km > 3500 else 0)
            rows.append((number, airline, code, f"{dep // 60:02d}:{dep % 60:02d}", rng.choice(GATES), aircraft,
                         f"{delay_prob:.2f}", int(round(typical)), f"{rng.uniform(0.02, 0.18):.2f}",
                         f"{ORIGIN[1]:.4f}", f"{ORIGIN[2]:.4f}", f"{lat:.4f}", f"{lon:.4f}"))
    rows.sort(key=lambda r: (r[3], r[0]))
    header = ["flight", "airline", "destination", "scheduled_dep_utc", "gate", "aircraft", "delay_prob",
              "typical_delay_min", "gate_change_prob", "lat", "lon", "dest_lat", "dest_lon"]
    return header, rows


# --------------------------------------------------------------------------------------------
# symbols.csv: 24 invented equities on three venues and 8 FX pairs

VENUES = {"XNAS": 0.01, "XNYS": 0.01, "XLON": 0.5}  # venue: tick size (USD, USD, GBX pence)
FX_PAIRS = [("EURUSD", 1.0850, 0.00001), ("GBPUSD", 1.2700, 0.00001), ("USDJPY", 151.20, 0.001),
            ("USDCHF", 0.8850, 0.00001), ("AUDUSD", 0.6600, 0.00001), ("USDCAD", 1.3600, 0.00001),
            ("EURGBP", 0.8550, 0.00001), ("NZDUSD", 0.6050, 0.00001)]
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _decimals(tick: float) -> int:
    return max(0, -math.floor(math.log10(tick) + 1e-9)) if tick < 1 else 0


def symbols(rng: random.Random) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    taken: set[str] = set()
    for venue, tick in VENUES.items():
        for _ in range(8):
            ticker = "".join(rng.choice(_LETTERS) for _ in range(rng.randint(3, 4)))
            while ticker in taken:
                ticker = "".join(rng.choice(_LETTERS) for _ in range(rng.randint(3, 4)))
            taken.add(ticker)
            price = math.exp(rng.uniform(math.log(12), math.log(450)))  # USD, or GBX on XLON
            if venue == "XLON":
                price *= 8
            price = round(price / tick) * tick
            lot = 1 if venue != "XLON" or rng.random() < 0.7 else 10
            rows.append((ticker, venue, "equity", f"{price:.{_decimals(tick)}f}",
                         f"{rng.uniform(0.15, 0.65):.3f}", f"{tick:.{_decimals(tick)}f}", lot))
    for pair, mid, tick in FX_PAIRS:
        price = round(mid * (1 + rng.uniform(-0.02, 0.02)) / tick) * tick
        rows.append((pair, "FX", "fx", f"{price:.{_decimals(tick)}f}", f"{rng.uniform(0.05, 0.12):.3f}",
                     f"{tick:.{_decimals(tick)}f}", 1000))
    rows.sort(key=lambda r: (r[1], r[0]))
    return ["symbol", "venue", "asset_class", "start_price", "volatility_annual", "tick_size", "lot_size"], rows


# --------------------------------------------------------------------------------------------
# sensors.csv: 20 sensors in a six-room flat

ROOMS = ["living_room", "kitchen", "bedroom", "bathroom", "office", "hallway"]
# kind: (unit, rooms that have one, interval_s choices, mean range, stddev range, min, max, alert_above)
SENSOR_KINDS = {
    "temperature": ("degC", ROOMS, (30, 60), (19.0, 22.5), (0.3, 0.9), -10.0, 45.0, 28.0),
    "humidity": ("%RH", ["kitchen", "bedroom", "bathroom", "living_room"], (60,), (40.0, 55.0), (3.0, 7.0),
                 0.0, 100.0, 70.0),
    "air_quality": ("ppm", ["living_room", "kitchen", "bedroom", "office", "hallway"], (30, 60), (550.0, 850.0),
                    (60.0, 180.0), 400.0, 5000.0, 1200.0),
    "light": ("lux", ["living_room", "kitchen", "bedroom", "office", "bathroom"], (5, 10), (120.0, 400.0),
              (40.0, 150.0), 0.0, 2000.0, 1500.0),
}


def sensors(rng: random.Random) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    for kind, (unit, rooms, intervals, mean_r, sd_r, lo, hi, alert) in SENSOR_KINDS.items():
        for room in rooms:
            mean, sd, above = rng.uniform(*mean_r), rng.uniform(*sd_r), alert
            if kind == "humidity" and room == "bathroom":  # showers: damp and jumpy
                mean, sd, above = mean + 15, sd * 2, 85.0
            if kind == "temperature" and room == "bathroom":
                mean += 1.5
            rows.append((f"{room}.{kind}", room, kind, unit, rng.choice(intervals), f"{mean:.2f}", f"{sd:.2f}",
                         f"{lo:.2f}", f"{hi:.2f}", f"{above:.2f}"))
    rows.sort(key=lambda r: r[0])
    return ["sensor_id", "room", "kind", "unit", "interval_s", "mean", "stddev", "min", "max", "alert_above"], rows


# --------------------------------------------------------------------------------------------
# vitals.csv: four vital signs for each of 10 patients wearing a monitor

# vital: (unit, interval_s, mean range, stddev range, low_alert, high_alert)
VITALS = {
    "heart_rate": ("bpm", 1, (62.0, 84.0), (3.0, 7.0), 45.0, 120.0),
    "spo2": ("%", 5, (95.5, 98.5), (0.5, 1.0), 92.0, 100.0),
    "systolic_bp": ("mmHg", 300, (108.0, 132.0), (5.0, 10.0), 90.0, 160.0),
    "temperature": ("degC", 60, (36.4, 37.0), (0.10, 0.25), 35.5, 38.0),
}
# patient number: (vital, shift of the mean) - a few patients whose alarms should go off now and then
CONDITIONS = {3: ("heart_rate", 28.0), 5: ("systolic_bp", 26.0), 7: ("spo2", -3.0), 9: ("temperature", 1.1)}


def vitals(rng: random.Random) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    for p in range(1, 11):
        for vital, (unit, interval, mean_r, sd_r, low, high) in VITALS.items():
            mean, sd = rng.uniform(*mean_r), rng.uniform(*sd_r)
            cond = CONDITIONS.get(p)
            if cond and cond[0] == vital:
                mean += cond[1]
            if vital == "spo2":
                mean = min(mean, 99.0)
            rows.append((f"P{p:02d}", vital, unit, interval, f"{mean:.2f}", f"{sd:.2f}", f"{low:.2f}", f"{high:.2f}"))
    rows.sort(key=lambda r: (r[0], r[1]))
    return ["patient_id", "vital", "unit", "interval_s", "mean", "stddev", "low_alert", "high_alert"], rows


# --------------------------------------------------------------------------------------------
# products.csv: a 60-item shop catalogue

# category: (price range in EUR, adjectives, nouns)
CATALOGUE = {
    "books": ((8.0, 45.0), ["Pocket", "Illustrated", "Complete", "Annotated"],
              ["Atlas", "Cookbook", "Novel", "Field Guide", "Puzzle Book"]),
    "electronics": ((15.0, 420.0), ["Wireless", "Compact", "Smart", "Portable"],
                    ["Earbuds", "Speaker", "Charger", "Webcam", "Keyboard", "Power Bank"]),
    "kitchen": ((6.0, 160.0), ["Cast-Iron", "Ceramic", "Bamboo", "Steel"],
                ["Pan", "Teapot", "Knife Set", "Cutting Board", "Mixing Bowl"]),
    "garden": ((5.0, 220.0), ["Folding", "Solar", "Hardy", "Weatherproof"],
               ["Lantern", "Planter", "Hose", "Seed Kit", "Bench"]),
    "toys": ((4.0, 90.0), ["Wooden", "Magnetic", "Giant", "Glow"],
             ["Puzzle", "Train Set", "Kite", "Building Blocks", "Yo-yo"]),
    "clothing": ((9.0, 140.0), ["Merino", "Linen", "Waterproof", "Organic"],
                 ["Scarf", "Socks", "Jacket", "Beanie", "T-shirt"]),
}


def products(rng: random.Random) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    names: set[str] = set()
    n = 0
    for category, ((lo, hi), adjectives, nouns) in CATALOGUE.items():
        for _ in range(10):
            name = f"{rng.choice(adjectives)} {rng.choice(nouns)}"
            while name in names:
                name = f"{rng.choice(adjectives)} {rng.choice(nouns)}"
            names.add(name)
            n += 1
            price = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            price = math.floor(price) + rng.choice([0.49, 0.90, 0.95, 0.99])
            demand = math.exp(rng.uniform(math.log(0.05), math.log(4.0))) * (30 / (price + 30))  # cheap sells more
            restock = int(max(10, round(demand * rng.uniform(60, 240), -1)))  # one to four hours of sales
            stock = rng.randint(0, 3 * restock)
            rows.append((f"SKU-{n:04d}", name, category, f"{price:.2f}", stock, restock, f"{demand:.3f}",
                         f"{rng.uniform(0.001, 0.03):.3f}"))
    rows.sort(key=lambda r: r[0])
    return ["sku", "name", "category", "price", "stock", "restock_qty", "demand_per_min", "price_change_prob"], rows


# --------------------------------------------------------------------------------------------

GENERATORS: dict[str, Callable[[random.Random], tuple[list[str], list[Row]]]] = {
    "routes.csv": routes, "flights.csv": flights, "symbols.csv": symbols,
    "sensors.csv": sensors, "vitals.csv": vitals, "products.csv": products,
}


def write_all(folder: Path, seed: int) -> list[Path]:
    """Write every dataset into ``folder``; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in GENERATORS.items():
        header, rows = make(random.Random(f"{seed}:{name}"))
        path = folder / name
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        written.append(path)
    return written


def check(folder: Path, seed: int) -> list[str]:
    """Names of the files in ``folder`` that differ from a fresh generation (missing ones included)."""
    with tempfile.TemporaryDirectory(prefix="labkit-data-") as tmp:
        fresh = write_all(Path(tmp), seed)
        return [p.name for p in fresh
                if not (folder / p.name).is_file() or not filecmp.cmp(p, folder / p.name, shallow=False)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write labkit's scenario datasets (CSV) deterministically.")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: this folder)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file in --out differs from a fresh generation")
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.out, args.seed)
        if stale:
            sys.stderr.write(f"out of date in {args.out} (seed {args.seed}): {', '.join(stale)}; "
                             f"rewrite them with `python data/generate.py --seed {args.seed}`\n")
            return 1
        sys.stdout.write(f"all {len(GENERATORS)} datasets in {args.out} match seed {args.seed}\n")
        return 0
    for path in write_all(args.out, args.seed):
        sys.stdout.write(f"wrote {path} ({path.stat().st_size} bytes)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
