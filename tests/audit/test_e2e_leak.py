"""AUDIT F12: without a share group `Ingest._publish_acks` never calls `wait_published`, so every PUBACK of
a retained ack stays in `Mqtt._puback` for the life of the process (and `_unacked` fills to 65,535 mids).
One busy node makes the ingest publish up to 4 acks a second (ACK_EVERY_S): ~12 MB a day, without bound."""

import random

from rimba.adapters.mqtt import Mqtt
from rimba.dev.harness import wait_until


def test_published_acks_are_not_remembered_forever(stack):
    from rimba.settings import build

    s = build(overrides={"mqtt_url": stack.mqtt_url}, env={})
    m = Mqtt(s.broker, f"audit-leak-{random.getrandbits(32)}", v5=False, persistent=False).start()
    try:
        for i in range(2000):  # what Ingest._publish_acks does, one process, no share group
            m.publish("rimba/v1/smp29/audit-leak/ack", b'{"v":1,"epoch":1,"seq":%d}' % i, qos=1, retain=False,
                      track=False)
        from rimba.adapters.mqtt import PUBACKS_KEPT

        wait_until(lambda: len(m._puback) > PUBACKS_KEPT, 30, "the last PUBACKs")
        m.publish("rimba/v1/smp29/audit-leak/ack", b"{}", qos=1, retain=False, track=False)  # the next ack drains
        assert len(m._puback) <= 1 and len(m._unacked) == 0, \
            f"{len(m._puback)} PUBACK ids and {len(m._unacked)} unacked ids kept after 2000 publishes"
    finally:
        m.stop()
