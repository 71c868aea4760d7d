#!/usr/bin/env python3
"""Generate the demo roster of Yulin (玉林市) for jiaoying.

Writes next to this file:
  regions.csv, boundaries.geojson, contacts.csv, rainstorm-red.cap.xml, README.md

Deterministic (random.Random(2026)), Python 3.11 standard library only, no network.
County and township names and codes are real (统计用区划代码 2023, via
modood/Administrative-divisions-of-China dist/streets.csv). Coordinates, boundaries,
villages, people, phone numbers and e-mail addresses are SYNTHETIC.

Run: python3 config/demo/generate.py
"""

from __future__ import annotations

import csv
import json
import math
import random
import sys
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parent
SEED = 2026

CITY = ("450900", "玉林市", 22.65, 110.18)

# code, name, centre lat, centre lon (centres synthetic but near the real seats)
COUNTIES = [
    ("450902", "玉州区", 22.65, 110.15),
    ("450903", "福绵区", 22.58, 110.06),
    ("450921", "容县", 22.86, 110.56),
    ("450922", "陆川县", 22.32, 110.26),
    ("450923", "博白县", 22.27, 109.98),
    ("450924", "兴业县", 22.74, 109.87),
    ("450981", "北流市", 22.71, 110.35),
]

# Township-level units, real names and codes (2023 edition). Suffix = digits 7–9.
TOWNSHIPS = {
    "450902": [
        ("001", "玉城街道"), ("002", "南江街道"), ("003", "城西街道"), ("004", "城北街道"),
        ("005", "名山街道"), ("100", "大塘镇"), ("105", "茂林镇"), ("106", "仁东镇"),
        ("113", "仁厚镇"),
    ],
    "450903": [
        ("107", "福绵镇"), ("108", "成均镇"), ("109", "樟木镇"), ("110", "新桥镇"),
        ("111", "沙田镇"), ("112", "石和镇"),
    ],
    "450921": [
        ("100", "容州镇"), ("102", "杨梅镇"), ("103", "灵山镇"), ("104", "六王镇"),
        ("105", "黎村镇"), ("106", "杨村镇"), ("107", "县底镇"), ("108", "自良镇"),
        ("109", "松山镇"), ("110", "罗江镇"), ("111", "石头镇"), ("112", "石寨镇"),
        ("113", "十里镇"), ("114", "容西镇"), ("115", "浪水镇"),
    ],
    "450922": [
        ("101", "温泉镇"), ("102", "米场镇"), ("103", "马坡镇"), ("104", "珊罗镇"),
        ("105", "平乐镇"), ("106", "沙坡镇"), ("107", "大桥镇"), ("108", "乌石镇"),
        ("109", "良田镇"), ("110", "清湖镇"), ("111", "古城镇"), ("112", "沙湖镇"),
        ("113", "横山镇"), ("114", "滩面镇"),
    ],
    "450923": [
        ("100", "博白镇"), ("102", "双凤镇"), ("105", "顿谷镇"), ("106", "水鸣镇"),
        ("107", "那林镇"), ("108", "江宁镇"), ("109", "三滩镇"), ("110", "黄凌镇"),
        ("111", "亚山镇"), ("112", "旺茂镇"), ("114", "东平镇"), ("115", "沙河镇"),
        ("116", "菱角镇"), ("117", "新田镇"), ("118", "凤山镇"), ("119", "宁潭镇"),
        ("120", "文地镇"), ("121", "英桥镇"), ("122", "那卜镇"), ("123", "大垌镇"),
        ("124", "沙陂镇"), ("125", "双旺镇"), ("126", "松旺镇"), ("127", "龙潭镇"),
        ("128", "大坝镇"), ("129", "永安镇"), ("130", "径口镇"), ("131", "浪平镇"),
    ],
    "450924": [
        ("100", "石南镇"), ("101", "大平山镇"), ("102", "葵阳镇"), ("103", "城隍镇"),
        ("104", "山心镇"), ("105", "沙塘镇"), ("106", "蒲塘镇"), ("107", "北市镇"),
        ("108", "龙安镇"), ("109", "高峰镇"), ("110", "小平山镇"), ("111", "卖酒镇"),
        ("112", "洛阳镇"),
    ],
    "450981": [
        ("001", "陵城街道"), ("002", "城南街道"), ("003", "城北街道"), ("100", "北流镇"),
        ("101", "新荣镇"), ("102", "民安镇"), ("103", "山围镇"), ("104", "民乐镇"),
        ("105", "西埌镇"), ("106", "新圩镇"), ("107", "大里镇"), ("108", "塘岸镇"),
        ("109", "清水口镇"), ("110", "隆盛镇"), ("111", "大坡外镇"), ("112", "六麻镇"),
        ("113", "新丰镇"), ("114", "沙垌镇"), ("115", "平政镇"), ("116", "白马镇"),
        ("117", "大伦镇"), ("118", "扶新镇"), ("119", "六靖镇"), ("120", "石窝镇"),
        ("121", "清湾镇"),
    ],
}

# Yulin bounding box (approximate).
LAT_MIN, LAT_MAX = 21.6, 23.1
LON_MIN, LON_MAX = 109.6, 110.8

# Villages per township (about 1,500 in all).
VILLAGES_MIN, VILLAGES_MAX = 9, 18
# Village boundary: hexagon of this radius (degrees) around its centroid; villages are at
# least 0.012° apart, so neighbours do not overlap, and within 0.06° of the township centre,
# so they lie inside the township's hexagon (radius 0.12°).
VILLAGE_RADIUS = 0.006

# The city's published counts of risk points (玉林市): 山塘水库, 山洪危险区, 地质灾害隐患点.
RISK_POINTS = [("reservoir", "SK", 476), ("flash_flood", "SH", 879), ("geohazard", "DZ", 1846)]
RISK_KIND_CN = {"reservoir": "山塘水库", "flash_flood": "山洪", "geohazard": "地质灾害"}

# Synthetic village name parts: prefix + "村".
VILLAGE_PREFIXES = [
    "东", "西", "南", "北", "石岭", "大垌", "新塘", "木棉", "龙湾", "六合", "平山", "水口",
    "竹山", "黄泥", "长岭", "高田", "罗冲", "石塘", "荔枝", "上垌", "下垌", "塘口", "那良",
    "旺坡", "山口", "河背", "坡头", "大坑", "清水", "凤岭", "白石", "新村", "榕树", "樟木",
    "禾田", "鹿塘", "沙垌", "双合", "岭头", "马山", "松岭", "桂花", "三联", "合江", "朗村",
    "车田", "新安", "文岭", "福田", "甘塘",
]

SURNAMES = [
    "陈", "黄", "李", "梁", "韦", "覃", "莫", "庞", "钟", "冯", "吴", "刘", "张", "王", "杨",
    "林", "何", "罗", "谢", "邓", "周", "苏", "朱", "卢", "蒙", "廖", "潘", "唐", "宁", "温",
    "陆", "彭", "曾", "赖", "叶", "丘", "邹", "龙", "蔡", "肖",
]
GIVEN = [
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛",
    "明", "超", "秀", "霞", "平", "刚", "桂", "英", "华", "建", "文", "斌", "宁", "海", "林",
    "春", "志", "红", "玉", "兰", "凤", "福", "荣", "德", "贵", "生", "成", "宏", "振", "国",
    "新", "光", "庆", "祥", "远", "东", "金", "兴", "燕", "梅", "婷", "琳", "锋", "辉", "健",
    "俊", "鹏", "浩", "宇", "航", "珍", "清", "永", "源", "朝",
]

# Role labels (for the README and the summary; contacts.csv carries the role id only).
ROLES = {
    "city_duty": "市防指值班员",
    "county_duty": "县防指值班领导（A角）",
    "county_duty_b": "县防指值班领导（B角，A角的backup）",
    "township_leader": "乡镇党政主要领导",
    "township_duty": "乡镇值班领导",
    "village_leader": "村（社区）防汛责任人",
    "info_officer": "灾害信息员",
    "township_deputy": "乡镇分管领导（值班轮换）",
    "risk_monitor": "风险点监测员",
}

# The CAP area polygon, (lat, lon) as CAP writes it: roughly 容县 + 北流市. The generator
# checks that it contains every township centroid of those two counties and none of the others.
CAP_POLYGON = [
    (23.12, 110.118),
    (23.12, 110.45),
    (23.12, 110.82),
    (22.75, 110.82),
    (22.397, 110.82),
    (22.516, 110.299),
    (23.12, 110.118),
]


def r5(x: float) -> float:
    return round(x, 5)


def f5(x: float) -> str:
    return f"{x:.5f}"


def nearest_county(lat: float, lon: float) -> str:
    best, best_d = "", float("inf")
    for code, _name, clat, clon in COUNTIES:
        d = (lat - clat) ** 2 + (lon - clon) ** 2
        if d < best_d:
            best, best_d = code, d
    return best


def in_bbox(lat: float, lon: float) -> bool:
    return LAT_MIN <= lat <= LAT_MAX and LON_MIN <= lon <= LON_MAX


def scatter(rng: random.Random, clat: float, clon: float, radius: float, county: str,
            taken: list[tuple[float, float]], min_dist: float) -> tuple[float, float]:
    """A point within `radius` of the centre, inside the bbox, whose nearest county centre is
    `county` (so centroids partition cleanly by county) and not closer than `min_dist` to the
    points already taken. Relaxes `min_dist` if the cell gets crowded."""
    attempts = 0
    while True:
        attempts += 1
        if attempts % 400 == 0:
            min_dist *= 0.8
        r = radius * math.sqrt(rng.random())
        a = rng.random() * 2 * math.pi
        lat = clat + r * math.sin(a)
        lon = clon + r * math.cos(a)
        if not in_bbox(lat, lon) or nearest_county(lat, lon) != county:
            continue
        if any((lat - p) ** 2 + (lon - q) ** 2 < min_dist ** 2 for p, q in taken):
            continue
        return r5(lat), r5(lon)


def hexagon(lat: float, lon: float, radius: float, rot: float) -> list[list[float]]:
    """Closed GeoJSON ring ([lon, lat]) of a hexagon around (lat, lon)."""
    ring = []
    for k in range(6):
        a = rot + k * math.pi / 3
        ring.append([r5(lon + radius * math.cos(a)), r5(lat + radius * math.sin(a))])
    ring.append(list(ring[0]))
    return ring


def point_in_polygon(lat: float, lon: float, poly: list[tuple[float, float]]) -> bool:
    inside = False
    n = len(poly)
    for i in range(n - 1):
        (y1, x1), (y2, x2) = poly[i], poly[i + 1]
        if (y1 > lat) != (y2 > lat):
            x = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < x:
                inside = not inside
    return inside


def build(rng: random.Random):
    regions = []  # dicts: code,name,level,parent,lat,lon
    regions.append(dict(code=CITY[0], name=CITY[1], level="city", parent="",
                        lat=CITY[2], lon=CITY[3]))
    for code, name, lat, lon in COUNTIES:
        regions.append(dict(code=code, name=name, level="county", parent=CITY[0],
                            lat=lat, lon=lon))

    townships = []  # (county_code, code, name, lat, lon)
    villages = []   # (township_code, code, name, lat, lon)
    all_points: list[tuple[float, float]] = []
    for ccode, _cname, clat, clon in COUNTIES:
        taken: list[tuple[float, float]] = []
        for suffix, tname in TOWNSHIPS[ccode]:
            if tname.endswith("街道"):
                lat, lon = scatter(rng, clat, clon, 0.045, ccode, taken, 0.015)
            else:
                lat, lon = scatter(rng, clat, clon, 0.25, ccode, taken, 0.045)
            taken.append((lat, lon))
            townships.append((ccode, ccode + suffix, tname, lat, lon))
        all_points.extend(taken)

    for ccode, tcode, tname, tlat, tlon in townships:
        n = rng.randint(VILLAGES_MIN, VILLAGES_MAX)
        prefixes = rng.sample(VILLAGE_PREFIXES, n)
        vtaken: list[tuple[float, float]] = []
        for i, prefix in enumerate(prefixes):
            vcode = f"{tcode}{201 + i:03d}"
            vname = prefix if prefix.endswith("村") else prefix + "村"
            lat, lon = scatter(rng, tlat, tlon, 0.06, ccode, vtaken, 0.012)
            vtaken.append((lat, lon))
            villages.append((tcode, vcode, vname, lat, lon))

    for ccode, tcode, tname, lat, lon in townships:
        regions.append(dict(code=tcode, name=tname, level="township", parent=ccode,
                            lat=lat, lon=lon))
    for tcode, vcode, vname, lat, lon in villages:
        regions.append(dict(code=vcode, name=vname, level="village", parent=tcode,
                            lat=lat, lon=lon))
    return regions, townships, villages


class People:
    """Distinct synthetic names and phone numbers, drawn from the shared RNG."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.names: set[str] = set()
        # Synthetic mobiles: "1700" (primary) or "1701" (second phone) + 7 digits; synthetic
        # landlines: 0775 (Yulin's area code) + "29" + 5 digits. All distinct.
        self.mobiles = [f"1700{n:07d}" for n in rng.sample(range(10_000_000), 8000)]
        self.seconds = [f"1701{n:07d}" for n in rng.sample(range(10_000_000), 3000)]
        self.landlines = [f"0775-29{n:05d}" for n in rng.sample(range(100_000), 500)]

    def name(self) -> str:
        while True:
            given_len = 1 if self.rng.random() < 0.3 else 2
            n = self.rng.choice(SURNAMES) + "".join(
                self.rng.choice(GIVEN) for _ in range(given_len))
            if n not in self.names:
                self.names.add(n)
                return n

    def phone(self) -> str:
        return self.mobiles.pop()

    def second(self) -> str:
        return self.seconds.pop()

    def landline(self) -> str:
        return self.landlines.pop()


def build_risk_points(rng: random.Random, villages):
    """The published counts per kind, each at a synthetic spot inside a village."""
    points = []
    for kind, prefix, count in RISK_POINTS:
        for i in range(count):
            tcode, vcode, vname, vlat, vlon = rng.choice(villages)
            r = VILLAGE_RADIUS * 0.8 * math.sqrt(rng.random())
            a = rng.random() * 2 * math.pi
            stem = vname.removesuffix("村")
            if kind == "reservoir":
                name = stem + rng.choice(["水库", "山塘", "塘坝"])
                people = rng.randint(50, 2000)
            elif kind == "flash_flood":
                name = stem + rng.choice(["冲", "河段", "沟", "垌"]) + "山洪危险区"
                people = rng.randint(20, 500)
            else:
                name = stem + rng.choice(["后山", "屯背", "岭脚", "坡头"]) + rng.choice(
                    ["滑坡", "崩塌", "不稳定斜坡"]) + "隐患点"
                people = rng.randint(3, 120)
            points.append(dict(key=f"{prefix}{i + 1:04d}", kind=RISK_KIND_CN[kind], name=name,
                               lat=r5(vlat + r * math.sin(a)), lon=r5(vlon + r * math.cos(a)),
                               region=vcode, people=people, monitors=""))
    return points


def build_contacts(rng: random.Random, townships, villages, points):
    people = People(rng)
    rows = []

    def add(key, role, region, backup, superior, channels="", email=False, phones=None):
        rows.append(dict(
            key=key, name=people.name(), phone=";".join(phones or [people.phone()]),
            email=f"{key}@demo.invalid" if email else "",
            role=role, region=region, backup=backup, superior=superior, channels=channels,
            note="虚构 synthetic",
        ))

    add("city-duty", "city_duty", CITY[0], "", "", "sms;email", email=True,
        phones=[people.phone(), people.landline()])
    for ccode, *_ in COUNTIES:
        a, b = f"c-{ccode}-duty", f"c-{ccode}-duty-b"
        add(a, "county_duty", ccode, b, "city-duty", "sms;email", email=True,
            phones=[people.phone(), people.landline()])
        add(b, "county_duty_b", ccode, a, "city-duty", "sms;email", email=True,
            phones=[people.phone(), people.landline()])
    for ccode, tcode, *_ in townships:
        lead, duty, deputy = f"t-{tcode}-leader", f"t-{tcode}-duty", f"t-{tcode}-deputy"
        office = people.landline()
        add(lead, "township_leader", tcode, duty, f"c-{ccode}-duty",
            phones=[people.phone(), people.second()])
        add(duty, "township_duty", tcode, lead, f"c-{ccode}-duty",
            phones=[people.phone(), office])
        add(deputy, "township_deputy", tcode, duty, lead, phones=[people.phone(), office])
    by_village: dict[str, list[dict]] = {}
    for p in points:
        by_village.setdefault(p["region"], []).append(p)
    for tcode, vcode, *_ in villages:
        lead, info = f"v-{vcode}-leader", f"v-{vcode}-info"
        second = [people.second()] if rng.random() < 0.2 else []
        add(lead, "village_leader", vcode, info, f"t-{tcode}-leader",
            phones=[people.phone()] + second)
        add(info, "info_officer", vcode, lead, f"t-{tcode}-leader")
        # One monitor per two risk points of the village; the info officer backs them up.
        here = by_village.get(vcode, [])
        for i in range(0, len(here), 2):
            key = f"m-{vcode}-{i // 2 + 1:02d}"
            add(key, "risk_monitor", vcode, info, lead)
            for p in here[i:i + 2]:
                p["monitors"] = key
    return rows


def build_rosters(townships):
    """Township duty: leader, duty leader and deputy take 24 h turns from 08:00, by day of
    month (1/3, 2/3, 3/3: every day is covered; on the 31st and the 1st the same person
    serves twice). County duty: A and B alternate; A also holds 端午 by a date range."""
    rows = []

    def add(role, region, contact, cron="", length="", start="", end=""):
        rows.append(dict(role=role, region=region, contact=contact, cron=cron, length=length,
                         start=start, end=end, tz="Asia/Shanghai"))

    for ccode, *_ in COUNTIES:
        add("county_duty", ccode, f"c-{ccode}-duty", "0 0 8 1/2 * *", "24h")
        add("county_duty", ccode, f"c-{ccode}-duty-b", "0 0 8 2/2 * *", "24h")
        add("county_duty", ccode, f"c-{ccode}-duty", start="2026-06-19 08:00",
            end="2026-06-20 08:00")
    for _ccode, tcode, *_ in townships:
        for d, who in enumerate(["leader", "duty", "deputy"], start=1):
            add("township_duty", tcode, f"t-{tcode}-{who}", f"0 0 8 {d}/3 * *", "24h")
    return rows


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow(row)


def write_regions(regions) -> None:
    rows = [dict(r, lat=f5(r["lat"]), lon=f5(r["lon"])) for r in regions]
    write_csv(OUT / "regions.csv", ["code", "name", "level", "parent", "lat", "lon"], rows)


def write_boundaries(rng: random.Random, townships, villages) -> int:
    features = []
    for code, name, lat, lon in COUNTIES:
        features.append((code, name, hexagon(lat, lon, 0.30, rng.random() * math.pi / 3)))
    for _c, code, name, lat, lon in townships:
        features.append((code, name, hexagon(lat, lon, 0.12, rng.random() * math.pi / 3)))
    for _t, code, name, lat, lon in villages:
        features.append((code, name, hexagon(lat, lon, VILLAGE_RADIUS, 0.0)))
    lines = []
    for code, name, ring in features:
        feat = {
            "type": "Feature",
            "properties": {"code": code, "name": name, "synthetic": True},
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        }
        lines.append(json.dumps(feat, ensure_ascii=False, separators=(",", ":")))
    text = '{"type":"FeatureCollection","features":[\n' + ",\n".join(lines) + "\n]}\n"
    (OUT / "boundaries.geojson").write_text(text, encoding="utf-8")
    return len(features)


CAP_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>45090041600000_20260612023000</identifier>
  <sender>450900000000@yulin.weather.demo</sender>
  <sent>2026-06-12T02:30:00+08:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <note>jiaoying demo message: synthetic, not a real warning.</note>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨红色预警</event>
    <responseType>Evacuate</responseType>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <eventCode>
      <valueName>GB/T 35561</valueName>
      <value>11B03</value>
    </eventCode>
    <effective>2026-06-12T02:30:00+08:00</effective>
    <onset>2026-06-12T02:30:00+08:00</onset>
    <expires>2026-06-12T08:30:00+08:00</expires>
    <senderName>玉林市气象台</senderName>
    <headline>玉林市气象台发布暴雨红色预警信号</headline>
    <description>玉林市气象台2026年6月12日02时30分发布暴雨红色预警信号：过去3小时，容县、北流市、陆川县部分乡镇已出现100毫米以上降雨，其中容县六王镇、北流市隆盛镇累计雨量超过150毫米；预计未来3小时上述地区强降雨仍将持续，累计雨量可达100毫米以上，并伴有雷电和短时大风。发生山洪、滑坡、泥石流等地质灾害和城乡内涝的风险极高，请注意防御。</description>
    <instruction>1.政府及相关部门按照职责做好防暴雨应急和抢险工作；2.立即转移危险区域群众，山洪、地质灾害隐患点和低洼易涝区人员立即撤离，转移后不得擅自返回；3.停止集会、停课、停业（除特殊行业外）；4.做好山洪、滑坡、泥石流等灾害的防御和抢险工作；5.乡镇、村（社区）防汛责任人收到后立即回复“收到”，并及时报告转移人数。</instruction>
    <parameter>
      <valueName>colour</valueName>
      <value>red</value>
    </parameter>
    <area>
      <areaDesc>玉林市容县、北流市、陆川县</areaDesc>
      <polygon>{polygon}</polygon>
      <geocode>
        <valueName>GB2260</valueName>
        <value>450921</value>
      </geocode>
      <geocode>
        <valueName>GB2260</valueName>
        <value>450981</value>
      </geocode>
      <geocode>
        <valueName>GB2260</valueName>
        <value>450922</value>
      </geocode>
    </area>
  </info>
</alert>
"""


def write_cap() -> None:
    assert CAP_POLYGON[0] == CAP_POLYGON[-1] and 5 <= len(CAP_POLYGON) <= 8
    polygon = " ".join(f"{lat},{lon}" for lat, lon in CAP_POLYGON)
    (OUT / "rainstorm-red.cap.xml").write_text(CAP_TEMPLATE.format(polygon=polygon),
                                               encoding="utf-8")


README = """# Demo roster: 玉林市 (Yulin, Guangxi)

Generated by `generate.py`; do not edit these files by hand. Regenerate with

    python3 config/demo/generate.py

(Python 3.11+, standard library only, deterministic: `random.Random(2026)`, no network).
`jiaoying demo` loads this directory (regions, boundaries, contacts, risk points, rosters, in
that order: later files refer to earlier ones); `jiaoying import KIND FILE` takes the same
files one by one, and `jiaoying ingest rainstorm-red.cap.xml` the warning.

## What is real and what is not

- **Real:** the names and division codes of 玉林市, its 7 county-level units and their
  110 township-level units (统计用区划代码, 2023 edition, via
  modood/Administrative-divisions-of-China `dist/streets.csv`).
- **Real counts:** the city's published numbers of risk points: 476 山塘水库 (reservoirs),
  879 山洪危险区 (flash-flood points), 1,846 地质灾害隐患点 (geohazard points).
- **SYNTHETIC (虚构):** every coordinate (centroids), every boundary polygon, all villages (names
  and codes), every risk point's name, place and people threatened, all people, phone numbers
  and e-mail addresses, the duty roster, and the warning itself. Mobiles are `1700` + 7 digits
  (primary) or `1701` + 7 digits (second phone), landlines `0775-29` + 5 digits; e-mail
  addresses use the reserved `.invalid` domain. Every contact row says `虚构 synthetic` in its
  `note` column. Do not dial or mail them; the demo uses the loopback gateway.

## Files

| file | content |
| --- | --- |
| `regions.csv` | `code,name,level,parent,lat,lon`. Codes are written as 6 (city, county), 9 (township) or 12 (village) digits, not zero-padded to 12; `level` is `city`, `county`, `township` or `village`; `parent` is the parent's code (empty for the city); `lat`/`lon` a WGS 84 centroid in degrees. Rows are ordered parents first. |
| `boundaries.geojson` | FeatureCollection, one Polygon per county (hexagon, radius 0.3°), per township (radius 0.12°) and per village (radius 0.006°, inside its township's) around the centroid; GeoJSON order `[lon, lat]`; properties `code`, `name`, `synthetic: true`. County and township hexagons overlap their neighbours: use them for drawing, not for exact targeting. |
| `contacts.csv` | `key,name,phone,email,role,region,backup,superior,channels,note` (details below). |
| `risk_points.csv` | Chinese headers on purpose: `编号,类型,名称,纬度,经度,区划代码,威胁人数,监测员` (key `SK0001`/`SH0001`/`DZ0001`, kind 山塘水库/山洪/地质灾害, name, lat, lon, the village, people threatened, the monitor's contact key). |
| `rosters.csv` | `role,region,contact,cron,length,start,end,tz`: township duty (`township_duty`) rotates daily among the leader, the duty leader and the deputy (cron `0 0 8 1/3 * *`, `2/3`, `3/3`, 24 h; on the 31st and the 1st the same person serves twice); county duty (`county_duty`) alternates A and B (`1/2`, `2/2`), and A also holds 端午 by a date range (`2026-06-19 08:00`→`2026-06-20 08:00`). |
| `rainstorm-red.cap.xml` | CAP 1.2 暴雨红色预警 from 玉林市气象台, 2026-06-12 02:30+08:00, expires 08:30; one `area` with geocodes (`GB2260`) 450921 容县, 450981 北流市, 450922 陆川县 and a polygon that on its own covers 容县 and 北流市 (see below). |

### contacts.csv

- `key`: stable ASCII id, referenced by `backup`, `superior`, risk point monitors and rosters:
  `city-duty`, `c-<county>-duty`, `c-<county>-duty-b`, `t-<township>-leader`,
  `t-<township>-duty`, `t-<township>-deputy`, `v-<village>-leader`, `v-<village>-info`,
  `m-<village>-NN` (risk point monitors, one per two points of the village).
- `phone`: one or more numbers separated by `;` (`、` and `,` are accepted too); the first is
  the primary one (SMS goes there), and an SMS reply from any of them is the person's.
  Normalised to E.164 (`+86…`). City, county and township people have two (a second mobile or
  an office landline), one village leader in five a second mobile.
- `email`: only for the city and county rows.
- `role`, `region` (the division code the person answers for):

{roles}

- `backup` (AB角) and `superior`: keys of other rows, empty for none. Backups: county A/B,
  township leader/duty are mutual pairs, the deputy's is the duty leader, village leader/info
  officer mutual, monitors' the village info officer. Superiors: monitors → the village leader;
  village → the township leader; township leader and duty → the county duty (A); deputy → the
  township leader; county A and B → `city-duty`.
- `channels`: `;`-separated channel kinds (`sms;email`) overriding the policy's channels;
  empty means the policy default. Only the city and county rows set it.
- `note`: `虚构 synthetic` (ignored by the importer, like any column it does not know).

## Import format (all kinds)

CSV (UTF-8, with or without BOM, or GBK/GB18030 as Excel saves it on Chinese Windows) or XLSX
(the sheet named after the kind, e.g. `contacts`, else the first sheet); boundaries are GeoJSON.
The first row holds the headers; headers are matched ignoring case, spaces, `*` and anything
after a bracket (`手机号（多个用；分隔）`). Unknown columns are ignored. Errors name the
spreadsheet row (line 1 = the header) and the header as written.

| column | also accepted | kinds |
| --- | --- | --- |
| `key` | 编号, 人员编号, 风险点编号, 隐患点编号, id | contacts, risk-points |
| `code` | 区划代码, 行政区划代码, 区划编码, 代码 | regions |
| `name` | 姓名, 名称, 区划名称, 风险点名称 | regions, contacts, risk-points |
| `level` | 级别, 层级, 行政级别 (values 省/市/县/区/乡镇/镇/乡/街道/村/社区 or English) | regions |
| `parent` | 上级区划, 上级代码, 上级区划代码, parent_code | regions |
| `lat`, `lon` | 纬度, latitude; 经度, longitude, lng | regions, risk-points |
| `phone` | phones, mobile, tel, 手机, 手机号, 手机号码, 电话, 联系电话, 电话号码 | contacts |
| `email` | e-mail, mail, 邮箱, 电子邮箱 | contacts |
| `role` | 职务, 角色, 岗位 | contacts, rosters |
| `region` | region_code, 区划代码, 行政区划代码, 所属区划, 所在区划 | contacts, risk-points, rosters |
| `risk_point` | risk_point_key, 风险点, 风险点编号, 隐患点编号 (instead of a region: the contact monitors that point and takes its region) | contacts |
| `backup` | AB角, B角, 备岗, 备份 | contacts |
| `superior` | 上级, 上级领导, 直接上级 | contacts |
| `channels` | 渠道, 通知渠道, 通知方式 (sms/voice/email/webhook or 短信/语音/电话/邮件) | contacts |
| `kind` | type, 类型, 类别, 风险点类型 (山塘水库/水库/山塘 → reservoir, 山洪 → flash_flood, 地质灾害/隐患点 → geohazard, 内涝/低洼/易涝点 → waterlogging) | risk-points |
| `people` | 威胁人数, 受威胁人数, 影响人数 | risk-points |
| `monitors` | 监测员, 巡查员, 监测员编号 (contact keys; `;`/`、`/`,` between them) | risk-points |
| `contact` | contact_key, 值班人员, 值班人员编号, 人员编号 | rosters |
| `cron` | 班次规则, cron表达式, 轮班规则 (`cron` crate syntax, seconds first: `0 0 8 * * *`) | rosters |
| `length` | duration, 时长, 班次时长 (`24h`, `90m`, `1d`, `24小时`; a bare number is hours; default 24 h) | rosters |
| `from`, `to` | start, 开始, 开始时间, 起始时间; end, 结束, 结束时间 (`2026-07-01 08:00`) | rosters |
| `tz` | timezone, time_zone, 时区 (IANA name; default Asia/Shanghai) | rosters |

A roster row has either `cron` (+ `length`) or both `from` and `to`. References are checked
against the file and the database: regions must exist (import regions first), backups and
superiors in the same file or stored, monitors and roster contacts stored. Natural keys:
region `code`, contact and risk point `key`, roster line (role, region, contact, cron or start);
re-importing upserts by them. A contact's phones are replaced by the sheet's; a risk point row
that lists monitors replaces that point's monitors.

### Targeting the demo warning

Township and village centroids are placed so that each lies nearer its own county centre than
any other (a Voronoi partition of the county centres), and the CAP polygon's west and south
edges follow the bisectors to 玉州区 and 陆川县. So, by centroid:

- the polygon alone contains exactly the townships and villages of 容县 and 北流市
  ({poly_summary});
- the geocodes (prefix match) add 陆川县: {geo_summary}.

## Counts

{counts}
"""


def main() -> int:
    rng = random.Random(SEED)
    regions, townships, villages = build(rng)
    points = build_risk_points(rng, villages)
    contacts = build_contacts(rng, townships, villages, points)
    rosters = build_rosters(townships)
    write_regions(regions)
    n_features = write_boundaries(rng, townships, villages)
    write_csv(OUT / "contacts.csv",
              ["key", "name", "phone", "email", "role", "region", "backup", "superior",
               "channels", "note"], contacts)
    # Chinese headers on purpose: the importer's aliases are part of what the demo shows.
    write_csv(OUT / "risk_points.csv",
              ["编号", "类型", "名称", "纬度", "经度", "区划代码", "威胁人数", "监测员"],
              [{"编号": p["key"], "类型": p["kind"], "名称": p["name"], "纬度": f5(p["lat"]),
                "经度": f5(p["lon"]), "区划代码": p["region"], "威胁人数": p["people"],
                "监测员": p["monitors"]} for p in points])
    write_csv(OUT / "rosters.csv", ["role", "region", "contact", "cron", "length", "start",
                                    "end", "tz"], rosters)
    write_cap()

    # ---- checks -------------------------------------------------------------------------
    errors = []
    codes = [r["code"] for r in regions]
    if len(set(codes)) != len(codes):
        errors.append("duplicate region codes")
    code_set = set(codes)
    for r in regions:
        if r["parent"] and r["parent"] not in code_set:
            errors.append(f"region {r['code']}: unknown parent {r['parent']}")
        if r["parent"] and not r["code"].startswith(r["parent"][:4 if r["level"] == "county"
                                                                else len(r["parent"])]):
            errors.append(f"region {r['code']}: not under its parent {r['parent']}")
        if not in_bbox(r["lat"], r["lon"]):
            errors.append(f"region {r['code']}: outside the Yulin bbox")
    per_county = Counter(c for c, *_ in townships)
    for ccode, _n, *_ in COUNTIES:
        if per_county[ccode] != len(TOWNSHIPS[ccode]):
            errors.append(f"county {ccode}: township count")
    if len(townships) != 110:
        errors.append(f"{len(townships)} townships, expected 110")
    keys = [c["key"] for c in contacts]
    if len(set(keys)) != len(keys):
        errors.append("duplicate contact keys")
    key_set = set(keys)
    refs = 0
    for c in contacts:
        for field in ("backup", "superior"):
            if c[field]:
                refs += 1
                if c[field] not in key_set:
                    errors.append(f"contact {c['key']}: {field} {c[field]} does not exist")
                if c[field] == c["key"]:
                    errors.append(f"contact {c['key']}: {field} is itself")
        if c["region"] not in code_set:
            errors.append(f"contact {c['key']}: unknown region {c['region']}")
    primaries = [c["phone"].split(";")[0] for c in contacts]
    if len(set(primaries)) != len(primaries) or not all(
            len(p) == 11 and p.startswith("1700") and p.isdigit() for p in primaries):
        errors.append("primary phones not distinct or not 1700xxxxxxx")
    seconds = [p for c in contacts for p in c["phone"].split(";")[1:] if p.startswith("1")]
    if len(set(seconds)) != len(seconds) or set(seconds) & set(primaries):
        errors.append("second mobiles not distinct")
    if not 4500 <= len(contacts) <= 5500:
        errors.append(f"{len(contacts)} contacts, expected about 5000")
    if not 1400 <= len(villages) <= 1600:
        errors.append(f"{len(villages)} villages, expected about 1500")
    kinds = Counter(p["kind"] for p in points)
    for kind, _prefix, count in RISK_POINTS:
        if kinds[RISK_KIND_CN[kind]] != count:
            errors.append(f"{kind}: {kinds[RISK_KIND_CN[kind]]} points, expected {count}")
    if any(not p["monitors"] or p["monitors"] not in key_set for p in points):
        errors.append("a risk point without a known monitor")
    village_at = {v[1]: (v[3], v[4]) for v in villages}
    for p in points:
        vlat, vlon = village_at[p["region"]]
        if math.hypot(p["lat"] - vlat, p["lon"] - vlon) > VILLAGE_RADIUS * 0.87:
            errors.append(f"risk point {p['key']} outside its village")
    township_at = {t[1]: (t[3], t[4]) for t in townships}
    for tcode, vcode, _n, lat, lon in villages:
        tlat, tlon = township_at[tcode]
        if math.hypot(lat - tlat, lon - tlon) + VILLAGE_RADIUS > 0.12 * 0.87:
            errors.append(f"village {vcode} outside its township")
    for r in rosters:
        if r["contact"] not in key_set:
            errors.append(f"roster: unknown contact {r['contact']}")

    # The CAP polygon must cover exactly the townships (and villages) of 容县 and 北流市.
    target = {"450921", "450981"}
    poly_hits = Counter()
    for ccode, tcode, tname, lat, lon in townships:
        inside = point_in_polygon(lat, lon, CAP_POLYGON)
        if inside:
            poly_hits[ccode] += 1
        if inside != (ccode in target):
            errors.append(f"CAP polygon: township {tcode} {tname} "
                          f"{'inside' if inside else 'outside'}")
    v_in = Counter()
    for tcode, vcode, vname, lat, lon in villages:
        if point_in_polygon(lat, lon, CAP_POLYGON):
            v_in[tcode[:6]] += 1
    v_target = sum(1 for t, *_ in villages if t[:6] in target)

    # ---- summary ------------------------------------------------------------------------
    levels = Counter(r["level"] for r in regions)
    roles = Counter(c["role"] for c in contacts)
    level_line = ", ".join(f"{lv} {levels[lv]}" for lv in ("city", "county", "township",
                                                          "village"))
    role_lines = [f"  {role:16} {roles[role]:4}  {ROLES[role]}" for role in ROLES]
    print(f"regions.csv         {len(regions)} rows: {level_line}")
    print("  townships per county: " + ", ".join(
        f"{n} {per_county[c]}" for c, n, *_ in COUNTIES))
    print(f"boundaries.geojson  {n_features} features (7 counties + {len(townships)} townships"
          f" + {len(villages)} villages)")
    print(f"risk_points.csv     {len(points)} rows: " + ", ".join(
        f"{RISK_KIND_CN[k]} {kinds[RISK_KIND_CN[k]]}" for k, *_ in RISK_POINTS))
    print(f"rosters.csv         {len(rosters)} rows")
    print(f"contacts.csv        {len(contacts)} rows; {refs} backup/superior references, "
          f"all resolve" if not any("does not exist" in e for e in errors) else "")
    print("\n".join(role_lines))
    print("rainstorm-red.cap.xml  polygon contains township centroids: " + ", ".join(
        f"{n} {poly_hits[c]}/{per_county[c]}" for c, n, *_ in COUNTIES if poly_hits[c]
        or c in target) + f"; villages {sum(v_in.values())} in polygon "
        f"({sum(v_in[c] for c in target)}/{v_target} of 容县+北流市)")

    role_md = "\n".join(
        f"  - `{role}`: {label}, {roles[role]} row{'' if roles[role] == 1 else 's'}"
        for role, label in ROLES.items())
    counts_md = "\n".join([
        f"- regions: {len(regions)} ({level_line})",
        "- townships per county: " + ", ".join(f"{n} {per_county[c]}"
                                                for c, n, *_ in COUNTIES),
        f"- boundaries: {n_features} features",
        f"- contacts: {len(contacts)}",
        "- risk points: " + ", ".join(f"{RISK_KIND_CN[k]} ({k}) {kinds[RISK_KIND_CN[k]]}"
                                      for k, *_ in RISK_POINTS),
        f"- duty roster lines: {len(rosters)}",
    ])
    poly_summary = (f"{sum(poly_hits.values())} townships, {sum(v_in.values())} villages")
    geo = {"450921", "450981", "450922"}
    geo_summary = (f"{sum(1 for c, *_ in townships if c in geo)} townships, "
                   f"{sum(1 for t, *_ in villages if t[:6] in geo)} villages in all")
    (OUT / "README.md").write_text(README.format(roles=role_md, counts=counts_md,
                                                 poly_summary=poly_summary,
                                                 geo_summary=geo_summary),
                                   encoding="utf-8")

    if errors:
        for e in errors:
            print("ERROR:", e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
