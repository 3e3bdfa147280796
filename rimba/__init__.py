"""Rimba: environmental sensing for Pontianak's school forests and riversides.

The shared core lives here: the measurement table (`rimba.metrics`), the wire
contract (`rimba.contract`), the fleet file (`rimba.fleet`), settings
(`rimba.settings`), the local stack (`rimba.dev.stack`), the simulator and the CLI.
"""

__version__ = "0.1.0"
