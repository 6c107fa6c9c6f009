"""Change notifications: every catalog change announced to webhooks and SNS topics.

Each configured target is its own sink with its own cursor on the change stream, so a
dead webhook delays neither the catalog nor any other sink. Messages go out one per
change, in commit order, at least once, each with a stable id (the dedupe key) and the
change's ``seq`` (its sequence number in this catalog).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stacwatchd.sinks.notify._message import (
    SIGNATURE_HEADER,
    TEST_EVENT,
    Composer,
    Message,
    sign,
    verify,
)
from stacwatchd.sinks.notify._target import NotifySink, read_secret

if TYPE_CHECKING:
    from stacwatchd.config import Settings

__all__ = [
    "SIGNATURE_HEADER",
    "TEST_EVENT",
    "Composer",
    "Message",
    "NotifySink",
    "notify_sinks",
    "sign",
    "verify",
]


def notify_sinks(settings: Settings) -> list[NotifySink]:
    """One sink per ``[[notify.webhook]]`` and ``[[notify.sns]]`` target, in order.

    Raises ConfigError when a webhook's secret cannot be read, or SNS targets are
    configured without boto3 installed.
    """
    from stacwatchd.errors import ConfigError

    notify = settings.notify
    if not notify.webhook and not notify.sns:
        return []
    composer = Composer(settings.catalog, {w.collection_id: w.collection for w in settings.watch}, notify.public_base_url)
    names = iter(notify.target_names())
    sinks: list[NotifySink] = []
    if notify.webhook:
        from stacwatchd.sinks.notify.webhook import WebhookSink

        for n, hook in enumerate(notify.webhook):
            secret = read_secret(hook, f"notify.webhook.{n}")
            sinks.append(WebhookSink(next(names), hook, composer, secret))
    if notify.sns:
        try:
            from stacwatchd.sinks.notify.sns import SnsSink
        except ImportError:
            raise ConfigError(None, "notify.sns needs boto3: pip install 'stacwatchd[sns]'") from None
        sinks += [SnsSink(next(names), topic, composer) for topic in notify.sns]
    return sinks
