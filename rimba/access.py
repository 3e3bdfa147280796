"""Who may do what: the access files under the state directory's `broker/` and the InfluxDB grant of each role.

`rimba stack lock` and `rimba node add` write them (hardware.provision); the local stack (rimba.dev.stack)
and the services' env files read them. `passwd` and `acl` are Mosquitto's; `influx.json` holds the
InfluxDB users, {role: [user, password]}; `secrets.json` the services' broker passwords.
"""

from __future__ import annotations

import json
from pathlib import Path

# What each InfluxDB user besides the admin may do on the database: ingest only writes, the analytics
# reads and writes, Grafana and the reports only read.
INFLUX_GRANTS = {"writer": "WRITE", "analyst": "ALL", "reader": "READ"}
INFLUX_ROLES = ("admin", *INFLUX_GRANTS)


def broker_dir(state_path) -> Path:
    return Path(state_path) / "broker"


def influx_users(state_path) -> dict:
    """{role: [user, password]} once `rimba stack lock` made them; {} for an open database."""
    path = broker_dir(state_path) / "influx.json"
    return json.loads(path.read_text()) if path.exists() else {}
