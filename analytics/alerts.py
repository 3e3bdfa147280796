"""Alerts officers can trust: rules, incidents, grouping, reminders, quiet hours, delivery.

Each evaluation turns the latest data into *observations*, one per rule and
subject (a node's metric, a node, or a whole site): the condition is true,
false, or unknown (no data). The engine keeps one *incident* per subject while
its condition holds, in a small SQLite store beside the other state:

- an incident opens when the condition has held for the rule's `for_s`
  (measured on the data, not on the evaluation clock), and is announced once:
  one `alert` message on MQTT under each contract version served (`rimba/v1/{site}/alert`, `rimba/v2/...`,
  state `firing`) and one notification to people;
- while it holds, people get a reminder every `repeat_s` unless someone
  acknowledged it (`rimba alerts ack ID`); a rise in severity is announced
  at once;
- it resolves only when the condition has been *false* for `clear_s`: an
  unknown condition (a node that stopped reporting) never resolves anything,
  and an overdue node's incident clears only when the node reports again;
- when `group_min` or more nodes of one site are overdue together, they form
  one site incident (node null, the members listed) instead of one each;
- notifications to people are grouped: one message per site per evaluation,
  listing what fired, repeated, rose or resolved. In quiet hours only
  critical changes go out; the rest wait and go out together when they end.

People are reached through Apprise URLs (Telegram, e-mail, webhooks and
the other services Apprise knows). Times are UNIX seconds; `now` is always
passed in, so the tests drive the clock.
"""

# The pieces (this module names them together, for the analytics run and the CLI):
#   alert_rules.py         the rules, as configuration
#   alert_observations.py  what the latest data says, rule by rule and subject
#   alert_engine.py        incidents: opened, reminded, escalated, resolved; messages and notifications
#   alert_store.py         incidents, held notifications and the outbox, in SQLite
#   rimba/adapters/notify.py        the adapters: Apprise for people, MQTT for the alert messages

from analytics.alert_engine import Change, Engine, digest, messages
from analytics.alert_observations import (
                                          Observation,
                                          anomaly_observations,
                                          category_observations,
                                          overdue_observations,
                                          threshold_observations,
)
from analytics.alert_rules import DEFAULT_RULES, DERIVED, KINDS, SEVERITIES, Rule, load_rules
from analytics.alert_store import AlertStore
from rimba.adapters.notify import MqttPublisher, apprise_notifier
from rimba.settings import parse_quiet

__all__ = ["DEFAULT_RULES", "DERIVED", "KINDS", "SEVERITIES", "AlertStore", "Change", "Engine",
           "MqttPublisher", "Observation", "Rule", "anomaly_observations", "apprise_notifier",
           "category_observations", "digest", "load_rules", "messages", "overdue_observations", "parse_quiet",
           "threshold_observations"]
