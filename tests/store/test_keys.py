from __future__ import annotations

import pytest
from redis.crc import key_slot

from receiver.store.keys import Keys, validate_prefix


def test_every_key_carries_the_prefix_and_one_hash_tag() -> None:
    keys = Keys("{acme}")
    names = [
        keys.notifications,
        keys.lifecycle,
        keys.alerts,
        keys.sink("teams"),
        keys.dlq("teams"),
        keys.poison,
        keys.delayed(keys.sink("teams")),
        keys.subscription("abc"),
        keys.subscriptions,
        keys.subscriptions_version,
        keys.subscription_touch("abc"),
        keys.reconciled("t"),
        keys.attempts("lifecycle"),
        keys.dedup("t", "a"),
        keys.alert_state("t", "a"),
        keys.deliveries("t", "a"),
        keys.ticket("jira", "t", "a"),
        keys.ticket_lock("jira", "t", "a"),
        keys.watermark("t", "alerts_v2"),
        keys.backfill_requests,
        keys.silences,
        keys.leader,
        keys.fencing,
        keys.rate_limit("t", "security"),
        keys.health("worker", "h1"),
        keys.counter("web"),
        keys.slack_message("C0SEC", "t", "a"),
        keys.slack_message_lock("C0SEC", "t", "a"),
        keys.slack_interactions,
        keys.slack_seen("d1"),
        keys.slack_claim("t", "a", "take", "v"),
    ]
    assert len(set(names)) == len(names)
    for name in names:
        assert name.startswith("{acme}:")
    # Redis Cluster hashes only the tag: every key maps to the same slot.
    slots = {key_slot(name.encode()) for name in names}
    assert len(slots) == 1
    assert key_slot(Keys("{other}").alerts.encode()) not in slots


def test_prefix_without_hash_tag_is_refused() -> None:
    assert validate_prefix("receiver") is not None
    assert validate_prefix("{}") is not None
    assert validate_prefix("") is not None
    assert validate_prefix("prod {x}") is not None
    assert validate_prefix("prod:{receiver}") is None
    with pytest.raises(ValueError, match="hash tag"):
        Keys("plain")


@pytest.mark.parametrize("bad", ["", "a b", "x:y", "../z"])
def test_sink_names_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid sink name"):
        Keys().sink(bad)
