"""Development tools: the local stack (Mosquitto and InfluxDB on free ports), the simulated fleet and its
climate, the firmware run on the host, and the harness the tests and benchmarks share.

Production code (the kernel, adapters, ingest, analytics, dashboards, hardware) never imports this
package; the application's `demo`, `simulate` and `stack` commands do.
"""
