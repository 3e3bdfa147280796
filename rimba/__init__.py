"""Rimba: environmental sensing for Pontianak's school forests and riversides.

The modules of this package are the kernel every other package imports: names, the measurement table and
the derived fields (`rimba.metrics`), the wire contract (`rimba.contract`), the line protocol, the fleet file,
settings, profiles, WIB, the node's image and the access files. Beside them: `rimba.adapters` (Mosquitto,
InfluxDB, Grafana, notifications), `rimba.dev` (the local stack, the simulator, the host node) and `rimba.app`
(the `rimba` command and the demo). tests/test_layers.py holds who imports whom.
"""

__version__ = "0.1.0"
