"""The pure decisions behind webhooks: signatures, refused addresses, retry schedule, matching."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from dockyard_api.webhooks.models import Webhook, WebhookOut, matches
from dockyard_api.webhooks.schedule import next_attempt
from dockyard_api.webhooks.settings import WebhookSettings
from dockyard_api.webhooks.signing import delivery_id, new_secret, sign, signature_matches
from dockyard_api.webhooks.subscriptions import Subscriptions
from dockyard_common import Written
from dockyard_common.addresses import (
    UnsafeDestination,
    allowed_by_list,
    checked_addresses,
    refusal,
)


def test_signatures_match_the_standard_webhooks_test_vector() -> None:
    # From the Standard Webhooks specification's own test suite.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
    header = f"v1,bm90LXRoaXM= {expected}"
    assert signature_matches(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, header)
    assert not signature_matches(secret, "msg_other", 1614265330, body, header)


def test_secrets_are_fresh_and_delivery_ids_are_stable_per_event_and_subscription() -> None:
    assert new_secret().startswith("whsec_") and new_secret() != new_secret()
    assert delivery_id("wh_1", "e1") == delivery_id("wh_1", "e1")
    assert (
        len({delivery_id("wh_1", "e1"), delivery_id("wh_2", "e1"), delivery_id("wh_1", "e2")}) == 3
    )


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("::", "unspecified"),
        ("::ffff:192.168.0.1", "private"),
        ("240.0.0.1", "private"),  # reserved: Python counts it private
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("::7f00:1", "loopback"),  # IPv4-compatible 127.0.0.1
    ],
)
def test_local_private_and_metadata_addresses_are_refused(address: str, reason: str) -> None:
    refused = refusal(ipaddress.ip_address(address))
    assert refused is not None and reason in refused


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_names_hosts_addresses_or_networks() -> None:
    allowed = ["hooks.internal", "127.0.0.1", "10.8.0.0/16"]
    assert allowed_by_list("HOOKS.internal", None, allowed)
    assert allowed_by_list("x", ipaddress.ip_address("127.0.0.1"), allowed)
    assert allowed_by_list("x", ipaddress.ip_address("10.8.3.4"), allowed)
    assert not allowed_by_list("x", ipaddress.ip_address("10.9.0.1"), allowed)


async def test_urls_are_checked_by_scheme_credentials_and_address() -> None:
    refused = (
        "ftp://example.org/",
        "http://user:pw@93.184.215.14/",
        "http://10.0.0.1/",
        "http://[not-an-address/",
        "http://93.184.215.14:99999/",
        "https://bücher.example/",  # the receiver's Host header must be ASCII: say which
    )
    for url in refused:
        with pytest.raises(UnsafeDestination):
            await checked_addresses(url, [])
    host, addresses = await checked_addresses("http://127.0.0.1:9/x", ["127.0.0.1"])
    assert (host, [str(a) for a in addresses]) == ("127.0.0.1", ["127.0.0.1"])


def test_retries_double_up_to_the_cap_and_stop_after_the_window() -> None:
    settings = WebhookSettings(webhook_retry_base_s=5, webhook_retry_max_delay_s=3600)
    policy = settings.retry_policy()
    queued = datetime(2026, 1, 1, tzinfo=UTC)
    assert [next_attempt(policy, n, queued, queued) for n in (1, 2, 3)] == [5, 10, 20]
    assert next_attempt(policy, 20, queued, queued) == 3600
    almost = queued + timedelta(hours=23, minutes=30)
    assert next_attempt(policy, 20, queued, almost) == pytest.approx(1800)
    assert next_attempt(policy, 20, queued, queued + timedelta(hours=24)) is None


def test_subscriptions_match_event_type_patterns_and_deployments() -> None:
    webhook = WebhookOut(
        id="wh_1", owner="acme", project="demo", url="https://x", event_types=["version.*"]
    )
    assert matches(webhook, "version.build.failed", "web")
    assert not matches(webhook, "alias.changed", "web")
    only_web = webhook.model_copy(update={"deployments": ["web"]})
    assert matches(only_web, "version.ready", "web")
    assert not matches(only_web, "version.ready", "api")


def test_held_subscriptions_follow_the_writes_of_their_project() -> None:
    def hook(webhook_id: str, project: str = "demo", url: str = "https://a") -> Webhook:
        return Webhook(
            id=webhook_id,
            owner="acme",
            project=project,
            url=url,
            event_types=["*"],
            secret=new_secret(),
        )

    held = Subscriptions()
    held.apply(Written("acme.demo.wh_1", 1, hook("wh_1")))
    held.apply(Written("acme.demo.wh_2", 2, hook("wh_2")))
    held.apply(Written("acme.other.wh_3", 3, hook("wh_3", project="other")))
    held.apply(Written("acme.demo.wh_1", 4, hook("wh_1", url="https://b")))
    assert sorted((w.id, w.url) for w in held.of_project("acme", "demo")) == [
        ("wh_1", "https://b"),
        ("wh_2", "https://a"),
    ]
    held.apply(Written("acme.demo.wh_2", 5, None))
    held.apply(Written("acme.other.wh_3", 6, None))
    held.apply(Written("acme.other.wh_9", 7, None))  # a deletion of one never held
    assert [w.id for w in held.of_project("acme", "demo")] == ["wh_1"]
    assert held.of_project("acme", "other") == []
    assert held.of_project("acme", "demo.wh_1") == []
