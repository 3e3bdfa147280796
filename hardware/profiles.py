"""Node profiles as data (hardware/profiles/*.toml): board, pin map, sensors, power, enclosure, bill of
materials; and what is generated from them: the BOM as a table, a wiring diagram (SVG) drawn from the
pin map, and the node's own copy of the pins, sensors and columns (a block of firmware/lib/sensors.py)."""

from __future__ import annotations

from html import escape
from pathlib import Path

from rimba.errors import ConfigError
from rimba.profiles import load, metrics, names, sensors
from rimba.profiles import pins as profile_pins
# which pins each sensor uses, and the wire's label
WIRES = {
    "sht4x": (("sda", "SDA"), ("scl", "SCL")),
    "soil": (("soil_adc", "AOUT"), ("soil_power", "VCC (switched)")),
    "ds18b20": (("onewire", "DQ (4.7k to 3V3)"),),
    "rain": (("rain", "reed switch"),),
    "jsnsr04t": (("uart_tx", "RX"), ("uart_rx", "TX")),
    "pms5003": (("uart_tx", "RX"), ("uart_rx", "TX")),
}


def bom_lines(profile: dict) -> list:
    rows = [(b["part"], b["qty"], b["description"], b["qty"] * b["price_idr"]) for b in profile["bom"]]
    total = sum(r[3] for r in rows)
    out = [f"{'qty':>3}  {'part':32} {'approx. Rp':>12}  description"]
    def rp(v):
        return f"{v:,}".replace(",", ".")  # Indonesian thousands separator

    out += [f"{q:>3}  {p:32} {rp(v):>12}  {d}" for p, q, d, v in rows]
    out.append(f"{'':>3}  {'total':32} {rp(total):>12}")
    return out


def wiring_svg(profile: dict) -> str:
    """The board on the left with the pins the profile uses; each sensor on the right, wired to its pins."""
    pins = profile["pins"]
    used = sorted(pins.items(), key=lambda kv: kv[1])
    row = 26
    height = max(len(used) * row + 120, len(profile["sensors"]) * 90 + 80)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" font-family="sans-serif" '
           f'font-size="12">',
           f'<text x="20" y="24" font-size="15" font-weight="bold">{escape(profile["name"])} node: wiring</text>',
           f'<rect x="20" y="50" width="200" height="{len(used) * row + 40}" fill="#eef3fb" stroke="#1F6FD1"/>',
           '<text x="30" y="68" font-weight="bold">ESP32</text>']
    y_of = {}
    for i, (role, gpio) in enumerate(used):
        y = 90 + i * row
        y_of[role] = y
        out.append(f'<text x="30" y="{y + 4}">GPIO{gpio} · {escape(role)}</text>')
        out.append(f'<circle cx="220" cy="{y}" r="3" fill="#1F6FD1"/>')
    for j, sensor in enumerate(profile["sensors"]):
        top = 50 + j * 90
        out.append(f'<rect x="480" y="{top}" width="250" height="70" fill="#f6f6f0" stroke="#555"/>')
        out.append(f'<text x="490" y="{top + 18}" font-weight="bold">{escape(sensor["part"])}</text>')
        out.append(f'<text x="490" y="{top + 36}" font-size="10">{escape(", ".join(sensor["metrics"]))}</text>')
        wires = WIRES.get(sensor["part"], ())
        for k, (role, label) in enumerate(wires):
            if role not in y_of:
                raise ConfigError(f"profile {profile['name']}: {sensor['part']} needs pin {role}, not in [pins]")
            ty = top + 50 + k * 10
            out.append(f'<path d="M220 {y_of[role]} C350 {y_of[role]} 350 {ty} 480 {ty}" fill="none" '
                       f'stroke="#D62728"/>')
            out.append(f'<text x="400" y="{ty - 3}" font-size="9">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


SENSORS_PY = Path(__file__).resolve().parent.parent / "firmware" / "lib" / "sensors.py"
BEGIN = "# --- generated from hardware/profiles/*.toml by `python -m hardware.profiles`: do not edit ---\n"
END = "# --- end of generated ---\n"


def firmware_block() -> str:
    """The profiles' pins, sensors and columns as the node's literals: the generated block of
    firmware/lib/sensors.py (in that module, not one of its own: a module costs the node's heap)."""
    pins: dict = {}
    for name in names():
        for role, gpio in profile_pins(name).items():
            if pins.setdefault(role, gpio) != gpio:
                raise ConfigError(f"profile {name}: pin {role} is GPIO{gpio}, another profile's is GPIO{pins[role]}")

    def literal(d: dict) -> str:
        return "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in d.items()) + "}\n"

    divider = _one("power.divider", {n: load(n)["power"]["divider"] for n in names()})
    tip = _one("the rain sensor's mm_per_tip", {n: s["mm_per_tip"] for n in names() for s in load(n)["sensors"]
                                                 if s["part"] == "rain"})
    return (BEGIN + "# every profile's pins (one GPIO per role), each profile's sensors in the order the node reads\n"
            "# them, and its metrics in the order of its rows; the battery divider and the rain gauge's bucket\n"
            f"PINS = {literal(dict(sorted(pins.items())))}"
            f"PROFILES = {literal({n: sensors(n) for n in names()})}"
            f"COLUMNS = {literal({n: metrics(n) for n in names()})}"
            f"BATTERY_DIVIDER = {divider!r}\n"
            f"MM_PER_TIP = {tip!r}\n" + END)


def _one(what: str, by_profile: dict):
    """The one value every profile gives (the node's firmware has one), else a ConfigError naming them."""
    values = set(by_profile.values())
    if len(values) != 1:
        raise ConfigError(f"profiles: {what} differs ({', '.join(f'{n} {v}' for n, v in sorted(by_profile.items()))})"
                          "; the firmware takes one")
    return values.pop()


def generated_block(text: str) -> str:
    """The generated block of a sensors.py text ("" when it has none)."""
    i, j = text.find(BEGIN), text.find(END)
    return text[i:j + len(END)] if 0 <= i < j else ""


def write_firmware(path: Path = SENSORS_PY) -> Path:
    text = path.read_text()
    old = generated_block(text)
    if not old:
        raise ConfigError(f"{path}: no generated block ({BEGIN.strip()} ... {END.strip()})")
    path.write_text(text.replace(old, firmware_block()))
    return path


def write_diagrams(out=Path(__file__).resolve().parent / "wiring") -> list:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names():
        path = out / f"{name}.svg"
        path.write_text(wiring_svg(load(name)))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_diagrams():
        print(p)
    print(write_firmware())
