"""The notification adapters: people through Apprise (Telegram, e-mail, webhooks, ...), and the contract's
`alert` messages to the broker."""

from __future__ import annotations

from rimba.errors import ConfigError


def apprise_notifier(urls: list, pace: bool = True):
    """A notify callable that sends through Apprise to every URL; False when any failed.

    Apprise paces messages to one service (5.5 s apart by default), as public services expect;
    `pace=False` turns that off for local receivers (the tests).
    """
    import apprise

    ap = apprise.Apprise()
    for url in urls:
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            raise ConfigError(f"alert_notify: Apprise does not understand {url.split('://')[0]}:// URLs")
        if not pace:
            plugin.request_rate_per_sec = 0
        ap.add(plugin)

    def notify(site, title, body, severity) -> bool:
        kind = {"critical": apprise.NotifyType.FAILURE, "warning": apprise.NotifyType.WARNING}.get(
            severity, apprise.NotifyType.INFO)
        return bool(ap.notify(body=body, title=title, notify_type=kind))
    return notify


class MqttPublisher:
    """Publishes `alert` messages (QoS 1) and waits for the broker to take each one."""

    def __init__(self, settings, client_id: str):
        from rimba.adapters.mqtt import Mqtt

        self.mqtt = Mqtt(settings.broker, client_id, ca_file=settings.mqtt_ca_file, v5=False, persistent=False)
        self.started = False

    def __call__(self, topic: str, payload: bytes) -> bool:
        """Whether the broker confirmed the message within 10 s."""
        if not self.started:
            self.mqtt.start()
            self.started = True
        mid = self.mqtt.publish(topic, payload, qos=1)
        return bool(self.mqtt.wait_published([mid], timeout=10))

    def close(self) -> None:
        if self.started:
            self.mqtt.stop()
