"""The words on the dashboards, in Bahasa Indonesia and English. One page speaks one language: every title,
description, legend and column heading of a page comes from its language's table here, or from the measurement
table's label in that language (`rimba.metrics`). The tests check that no page borrows the other's words.

Sources of the terms: ISPU and its category names, Permen LHK P.14/2020; the fire danger classes, ASEAN's
SEA-FDRS as BMKG runs it (Sistem Peringkat Bahaya Kebakaran, SPBK), whose index is the Canadian Fire Weather
Index (Indeks Cuaca Kebakaran); the heat index, the US National Weather Service (Rothfusz 1990).
"""

from __future__ import annotations

WORDS = {
    "id": {
        "day": "24 jam terakhir", "week": "7 hari terakhir",
        "heat_help": "Seberapa panas terasa di tubuh: suhu udara ditambah pengaruh kelembapan (NWS).",
        "ispu_help": "Indeks Standar Pencemar Udara dari rata-rata PM2.5 24 jam "
        "(Permen LHK P.14/2020): Baik, Sedang, Tidak Sehat, Sangat Tidak Sehat, Berbahaya.",
        "fire_help": "Kelas Indeks Cuaca Kebakaran (SPBK BMKG): Rendah, Sedang, "
        "Tinggi, Ekstrem. Dihitung dari cuaca pukul 12.00 WIB di bawah kanopi (mikroklimat).",
        "rain": "Hujan 24 jam", "rain_help": "Curah hujan 24 jam terakhir: jumlah tiap penakar, dirata-ratakan "
        "untuk lokasi.", "rain_chart": "Curah hujan per selang waktu: jumlah tiap penakar, dirata-ratakan untuk "
        "lokasi.", "flagged": "ditandai", "temp_help": "Suhu udara di lokasi.",
        "rh_help": "Kelembapan udara relatif.", "river_help": "Tinggi muka air Sungai Kapuas di atas datum lokasi.",
        "flag_note": "Titik merah: bacaan yang ditandai pemeriksaan mutu data.", "english": "",
        "ispu_site": "ISPU PM2.5 per lokasi, 7 hari", "nodes_1h": "node melapor, 1 jam",
        "nodes_help": "Node dengan setidaknya satu bacaan dalam satu jam terakhir, dari {n}.",
        "events": "Kejadian anomali", "events_help": "Rangkaian bacaan yang tidak wajar, dengan skor puncak dan "
        "keterangannya.", "heard": "Kabar terakhir dari tiap node",
        "heard_help": "Bacaan terbaru tiap node dalam berkas armada, yang paling lama diam di atas; kosong: belum "
        "pernah terdengar. Node yang diam melewati jadwalnya memicu peringatan terlambat.",
        "firing": "Peringatan aktif", "firing_help": "Insiden yang masih terbuka menurut analitik (berjalan tiap "
        "menit), satu baris per insiden; kolom waktu: kapan analitik terakhir melihatnya. Di server: "
        "`rimba alerts list` dan `ack`.", "anomalies": "Anomali", "alerts": "Peringatan",
        "replaced": "Sensor diganti",
        "overview": "Rimba: semua lokasi",
        "col": {"Time": "Waktu", "site": "Lokasi", "node": "Node", "metric": "Besaran", "severity": "Tingkat",
                "message": "Keterangan", "score": "Skor", "rule": "Aturan", "id": "ID insiden",
                "kind": "Jenis", "profile": "Profil", "heard": "Bacaan terakhir", "state": "Status"},
    },
    "en": {
        "day": "Last 24 hours", "week": "Last 7 days",
        "heat_help": "How hot it feels: air temperature plus the effect of humidity (NWS).",
        "ispu_help": "Indonesia's air pollution index from the 24-hour mean of PM2.5 "
        "(Permen LHK P.14/2020): Good, Moderate, Unhealthy, Very unhealthy, Hazardous.",
        "fire_help": "Fire Weather Index class (BMKG's FDRS): Low, Moderate, High, Extreme. "
        "From the 12:00 WIB weather under the canopy (microclimate).",
        "rain": "Rain, 24 h", "rain_help": "Rain in the last 24 hours: each gauge's total, averaged over the site.",
        "rain_chart": "Rain per interval: each gauge's total, averaged over the site.", "flagged": "flagged",
        "temp_help": "Air temperature at the site.", "rh_help": "Relative humidity of the air.",
        "river_help": "Kapuas river level above the site's datum.",
        "flag_note": "Red dots: readings flagged by the data-quality checks.", "english": " (English)",
        "ispu_site": "ISPU PM2.5 by site, 7 days", "nodes_1h": "nodes reporting, 1 h",
        "nodes_help": "Nodes with at least one reading in the last hour, of {n}.",
        "events": "Anomaly events", "events_help": "Runs of anomalous readings, with their peak score and a sentence.",
        "heard": "Last heard from, every node",
        "heard_help": "Each fleet node's newest reading, the longest silent first; empty: never heard from. A node "
        "silent past its cadence raises an overdue alert.",
        "firing": "Alerts firing", "firing_help": "Incidents the analytics (every minute) holds open, one row each; "
        "the time column: when the analytics last saw it. On the server: `rimba alerts list` and `ack`.",
        "anomalies": "Anomalies", "alerts": "Alerts", "overview": "Rimba: all sites", "replaced": "Sensor replaced",
        "col": {"Time": "Time", "site": "Site", "node": "Node", "metric": "Metric", "severity": "Severity",
                "message": "Message", "score": "Score", "rule": "Rule", "id": "Incident id", "kind": "Kind",
                "profile": "Profile", "heard": "Newest reading", "state": "State"},
    },
}
