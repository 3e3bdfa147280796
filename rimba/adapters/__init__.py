"""Adapters: the platform's side of the parts it talks to (Mosquitto, InfluxDB and its server program,
Grafana, notifications).

They import the kernel (`rimba.*` modules) and their libraries, and nothing of ingest, analytics,
dashboards, hardware or the development tools.
"""
