"""Ingest: MQTT `up`/`status` → validated, deduplicated → InfluxDB, exactly once.

    pipeline.py   pure: a decoded message + the node's seq marks → lines, dead letters, new marks
    ranges.py     pure: sets of seq numbers as sorted [first, last] ranges
    lineproto.py  pure: InfluxDB line protocol for the contract's measurements
    store.py      SQLite on local disk: the write-ahead spool, seq marks and dead letters
    writer.py     spooled lines into InfluxDB, splitting refused writes down to the refused line
    mqtt.py       the paho-mqtt adapter (manual acknowledgements)
    service.py    the composition root: receive → make durable → acknowledge → write
"""
