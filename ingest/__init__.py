"""Ingest: MQTT `up`/`status` → validated, deduplicated → InfluxDB, exactly once.

    pipeline.py   pure: one message + what is known of its node → lines, dead letters (wire-v2's storage rules)
    ledger.py     pure: what is known of each node (epochs and their seq marks, clock, status, budgets)
    seqset.py     pure: sets of seq numbers as sorted runs, searched by bisection
    store.py      SQLite on local disk: the write-ahead spool, the ledger and the dead letters
    writer.py     spooled lines into InfluxDB, splitting refused writes down to the refused line
    replay.py     `rimba deadletter list | replay`: a dead letter through the pipeline again
    service.py    the composition root: receive → make durable → acknowledge → write
(The line protocol is the kernel's `rimba/lineproto.py`; the MQTT and InfluxDB adapters are in
`rimba/adapters/`.)
"""
