"""The application: the `rimba` command and the demo, the only place that composes ingest, analytics,
dashboards and hardware."""
