"""Dashboards: the Grafana dashboards built from the fleet and the profiles, and the printed weekly report."""
