"""`rimba report`: a site's weekly summary as a PDF to print and a PNG to share in a class chat.

    rimba report --site smp29 --days 7 --lang id [--until UNIX_S] [--out DIR]

Page 1 (also the PNG): the site, the dates (WIB), highlights in plain words ("Hari terpanas: ..."),
days per ISPU category, and a chart per measured metric (hourly site means, flagged readings as red
dots, anomaly events shaded). Page 2: each day's minimum, maximum and mean per metric.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rimba import wib
from rimba.errors import ConfigError
from rimba.metrics import ISPU_CATEGORIES, METRICS

DAYS = {"id": ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu"),
        "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")}
MONTHS = {"id": ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"),
          "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")}
WORDS = {
    "id": {"title": "Laporan mingguan", "hottest": "Hari terpanas", "coolest": "Malam tersejuk",
           "wettest": "Hari paling basah", "dry": "Tidak ada hujan minggu ini", "air": "Kualitas udara (ISPU PM2.5)",
           "days": "hari", "no_pm": "Tidak ada pengukuran PM2.5 di lokasi ini",
           "highest_river": "Air sungai tertinggi", "flags": "bacaan ditandai pemeriksaan mutu data",
           "anomalies": "kejadian tidak biasa", "daily": "Ringkasan harian (min / maks / rata-rata)",
           "date": "Tanggal", "legend_flag": "ditandai", "legend_anomaly": "tidak biasa", "none": "-",
           "made": "Dibuat oleh Rimba", "time": "WIB"},
    "en": {"title": "Weekly report", "hottest": "Hottest day", "coolest": "Coolest night",
           "wettest": "Wettest day", "dry": "No rain this week", "air": "Air quality (ISPU PM2.5)",
           "days": "days", "no_pm": "No PM2.5 measured at this site",
           "highest_river": "Highest river level", "flags": "readings flagged by the data-quality checks",
           "anomalies": "unusual events", "daily": "Daily summary (min / max / mean)", "date": "Date",
           "legend_flag": "flagged", "legend_anomaly": "unusual", "none": "-", "made": "Made by Rimba",
           "time": "WIB"},
}


@dataclass
class Report:
    pdf: Path
    png: Path
    highlights: list
    points: dict = field(default_factory=dict)  # metric -> values drawn
    ispu_days: list = field(default_factory=list)  # days per category, Baik .. Berbahaya
    pages: int = 0


def _date(t: int, lang: str, weekday: bool = True) -> str:
    g = time.gmtime(wib.local(int(t)))
    text = f"{g.tm_mday} {MONTHS[lang][g.tm_mon - 1]} {g.tm_year}"
    return f"{DAYS[lang][g.tm_wday]} {text}" if weekday else text


def _label(metric: str, lang: str) -> str:
    m = METRICS[metric]
    return f"{m.label_id if lang == 'id' else m.label_en} ({m.unit})"


def make(week, lang: str, out_dir=".") -> Report:
    """The report of `week` (analytics.weekly.Week) in `lang` under `out_dir`."""
    if lang not in WORDS:
        raise ConfigError(f"--lang {lang}: choose id (Bahasa Indonesia) or en (English)")
    return _render(week, lang, Path(out_dir))


def _daily(values: np.ndarray, days: int, fn) -> np.ndarray:
    v = values[:days * 24].reshape(days, 24)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a day without values is NaN, said once in the table
        return fn(v, axis=1)


def _highlights(week, lang: str) -> list:
    w = WORDS[lang]
    days, start, site_mean = week.days, week.start, week.site_mean
    out = []
    day_t = start + np.arange(days) * 86400
    if "air_temp_c" in site_mean:
        tmax = _daily(site_mean["air_temp_c"], days, np.nanmax)
        tmin = _daily(site_mean["air_temp_c"], days, np.nanmin)
        if np.isfinite(tmax).any():
            k = int(np.nanargmax(tmax))
            out.append(f"{w['hottest']}: {_date(day_t[k], lang)}, {tmax[k]:.1f} °C")
        if np.isfinite(tmin).any():
            k = int(np.nanargmin(tmin))
            out.append(f"{w['coolest']}: {_date(day_t[k], lang)}, {tmin[k]:.1f} °C")
    if "rain_mm" in site_mean:
        rain = _daily(np.nan_to_num(site_mean["rain_mm"]), days, np.sum)
        if rain.max() >= 0.5:
            k = int(np.argmax(rain))
            out.append(f"{w['wettest']}: {_date(day_t[k], lang)}, {rain[k]:.0f} mm")
        else:
            out.append(w["dry"])
    if "water_level_cm" in site_mean and np.isfinite(site_mean["water_level_cm"]).any():
        k = int(np.nanargmax(site_mean["water_level_cm"]))
        out.append(f"{w['highest_river']}: {_date(start + k * 3600, lang)} "
                   f"{wib.clock(start + k * 3600)}, "
                   f"{site_mean['water_level_cm'][k]:.0f} cm")
    if "pm25_ugm3" in site_mean:
        names = [c[1] if lang == "id" else c[2] for c in ISPU_CATEGORIES]
        out.append(f"{w['air']}: " + ", ".join(f"{n} {k} {w['days']}" for n, k in zip(names, week.ispu_days,
                                                                                        strict=True) if k))
    else:
        out.append(w["no_pm"])
    out.append(f"{len(week.flags)} {w['flags']}; {len(week.events)} {w['anomalies']}")
    return out


def _render(week, lang: str, out_dir: Path) -> Report:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    w = WORDS[lang]
    site, name, days, start, end = week.site, week.name, week.days, week.start, week.end
    site_mean, flags, events = week.site_mean, week.flags, week.events
    highlights = _highlights(week, lang)
    hours = (np.asarray(week.times) - start) / 86400.0  # days since the start, for the x axis
    metrics = list(site_mean)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"rimba-{site}-{wib.date(end - 86400)}-{lang}"
    report = Report(out_dir / f"{stem}.pdf", out_dir / f"{stem}.png", highlights, ispu_days=list(week.ispu_days))

    fig = plt.figure(figsize=(8.27, 11.69))  # A4 portrait
    fig.text(0.06, 0.965, f"{w['title']}: {name}", fontsize=15, weight="bold")
    fig.text(0.06, 0.945, f"{_date(start, lang)} – {_date(end - 86400, lang)} ({w['time']})", fontsize=10)
    for i, line in enumerate(highlights):
        fig.text(0.06, 0.915 - i * 0.02, "• " + line, fontsize=9.5)
    n = len(metrics)
    top = 0.905 - len(highlights) * 0.02 - 0.02
    height = (top - 0.05) / max(n, 1)
    flagged = {}
    for f in flags:
        flagged.setdefault(f["metric"], []).append(f)
    for i, metric in enumerate(metrics):
        ax = fig.add_axes([0.1, top - (i + 1) * height + 0.025, 0.85, height - 0.035])
        v = site_mean[metric]
        ax.plot(hours, v, lw=1.0, color="#1F6FD1")
        report.points[metric] = int(np.isfinite(v).sum())
        fx = [((f["time"] - start) / 86400.0, f.get("value")) for f in flagged.get(metric, [])
              if f.get("value") is not None]
        if fx:
            ax.plot([a for a, _ in fx], [b for _, b in fx], "o", ms=3, color="#D62728", label=w["legend_flag"])
        for ev in (e for e in events if e["metric"] == metric):
            ax.axvspan((ev["time"] - start) / 86400.0, ((ev["end"] or ev["time"]) - start) / 86400.0,
                       color="#F2C200", alpha=0.3, lw=0)
        ax.set_ylabel(_label(metric, lang), fontsize=8)
        ax.set_xlim(0, days)
        ax.set_xticks(np.arange(days) + 0.5)
        ax.set_xticklabels([DAYS[lang][time.gmtime(wib.local(start + d * 86400)).tm_wday][:3] for d in range(days)],
                           fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
        if fx:
            ax.legend(fontsize=7, loc="upper right")
    fig.text(0.06, 0.015, f"{w['made']} · {w['legend_anomaly']}: ▇ / {w['legend_flag']}: ●", fontsize=7,
             color="#555555")
    fig.savefig(report.png, dpi=110)
    with PdfPages(report.pdf) as pdf:
        pdf.savefig(fig)
        plt.close(fig)
        table = plt.figure(figsize=(8.27, 11.69))
        table.text(0.06, 0.965, f"{w['daily']}: {name}", fontsize=13, weight="bold")
        ax = table.add_axes([0.05, 0.05, 0.9, 0.88])
        ax.axis("off")
        header = [w["date"]] + [_label(m, lang) for m in metrics]
        cells = []
        for d in range(days):
            row = [_date(start + d * 86400, lang)]
            for m in metrics:
                day = site_mean[m][d * 24:(d + 1) * 24]
                if not np.isfinite(day).any():
                    row.append(w["none"])
                elif m == "rain_mm":
                    row.append(f"{np.nansum(day):.1f}")
                else:
                    row.append(f"{np.nanmin(day):.1f} / {np.nanmax(day):.1f} / {np.nanmean(day):.1f}")
            cells.append(row)
        t = ax.table(cellText=cells, colLabels=header, loc="upper center", cellLoc="center")
        t.auto_set_font_size(False)
        t.set_fontsize(6.5)
        t.scale(1, 1.6)
        pdf.savefig(table)
        plt.close(table)
        report.pages = 2
    return report

