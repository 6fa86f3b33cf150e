"""Apache Qpid Proton for Python, used the way the platform's Python 2.7 sample uses it, against the
emulator: it receives what the admin API publishes, logs in with every signing method and auth mode,
and is refused, with a reason it (or the operator, through /admin/refusals) can read, in each case the
platform refuses.

Wire fact worth knowing: Proton advertises HALF its `heartbeat` as the Open frame's idle-time-out
(heartbeat=60 -> idle-time-out=30000 ms, the platform's lower bound; heartbeat=10 -> 5000 ms).
"""

import time

import pytest

from platform_client import SubscriptionClient, credentials, do_sign

AK_ID = "LTAI5tInteropKey"
AK_SECRET = "InteropSecret-4d9c2e71"
STS_ID = "LTAI5tStsRoleUser"
STS_SECRET = "StsUserSecret-8b1f03aa"
STS_TOKEN = "CAIS+interop/StsToken0123=="  # real tokens are base64: `+`, `/` and `=` padding
INSTANCE = "iot-cn-interop"
TOPIC = "/a1Interop/device-7/thing/event/property/post"

ACCOUNTS = """
[[accounts]]
access_key_id = "%s"
access_key_secret = "%s"

[[accounts]]
access_key_id = "%s"
access_key_secret = "%s"
security_token = "%s"

[[instances]]
id = ""
consumer_groups = ["DEFAULT_GROUP"]

[[instances]]
id = "%s"
consumer_groups = ["GROUP_A"]
""" % (AK_ID, AK_SECRET, STS_ID, STS_SECRET, STS_TOKEN, INSTANCE)

WAIT = 10  # seconds: the deadline of every single wait


def config(**limits):
    lines = ["[limits]"] + ["%s = %s" % (k, v) for k, v in limits.items()]
    return "\n".join(lines) + "\n" + ACCOUNTS


def login(client_id, **kwargs):
    kwargs.setdefault("access_key_id", AK_ID)
    kwargs.setdefault("access_key_secret", AK_SECRET)
    return credentials(client_id, **kwargs)


def client(emulator, client_id, **kwargs):
    """A started Proton client with fresh aksign/hmacsha1 credentials for DEFAULT_GROUP."""
    username, password = login(client_id)
    return SubscriptionClient(emulator.amqp_port, emulator.ca_pem, username, password, **kwargs).start()


def attached(c):
    c.wait(lambda s: s.receiver_attached() or s.ended(), WAIT, "the receiver link to attach")
    assert c.receiver_attached(), "not attached: %s" % c.state()
    return c


def refusal_for(emulator, client_id, stage):
    """The one refusal the emulator recorded for `client_id`, waited for."""
    found = emulator.wait_for(
        emulator.refusals, lambda rs: any(r["clientId"] == client_id for r in rs), WAIT,
        "a refusal of %s in /admin/refusals" % client_id)
    mine = [r for r in found if r["clientId"] == client_id]
    assert len(mine) == 1, mine
    assert mine[0]["stage"] == stage, mine[0]
    return mine[0]


def assert_refused_after_open(emulator, c, client_id, condition, words, stage="open"):
    """Proton saw the emulator's Open, then a Close carrying `condition` and a readable description."""
    c.wait(lambda s: s.connection_condition is not None or s.ended(), WAIT, "the emulator to close the connection")
    assert c.transport_condition is None, "refused before the Open, not after: %s" % c.state()
    assert c.remote_opened, c.state()
    assert c.connection_condition is not None, "closed without an error condition: %s" % c.state()
    assert c.connection_condition["name"] == condition, c.state()
    description = c.connection_condition["description"]
    assert isinstance(description, str) and description.strip(), "no readable description: %s" % c.state()
    for word in words:
        assert word in description, "%r not in the description %r" % (word, description)
    assert not c.receiver_attached() and not c.messages
    refusal = refusal_for(emulator, client_id, stage)
    assert refusal["condition"] == condition and refusal["reason"] == description, refusal
    return description


def assert_no_secret(emulator, *secrets):
    log, refusals = emulator.log(), emulator.refusals_text()
    assert "connection refused" in log or "client connected" in log, "the log file is not the emulator's: %s" % log[:500]
    for secret in secrets:
        assert secret not in log, "%r appears in the emulator's log" % secret
        assert secret not in refusals, "%r appears in /admin/refusals" % secret


# --- credentials ---------------------------------------------------------------------------------


def test_signing_matches_the_platform_test_vectors():
    vectors = [
        ("hmacsha1", "authId=LTAI5tDemoKey&timestamp=1573489088171", "OBqn06z9WxOWRrKr4jjsEz31euE="),
        ("hmacsha256", "authId=LTAI5tDemoKey&timestamp=1573489088171", "MwT2FRFmMx6L4CH5VUQ5W6XVakBa8PgnpkwOMhRSMZU="),
        ("hmacmd5", "authId=LTAI5tDemoKey&timestamp=1573489088171", "TDOW8wRiI1y+mZzqlfJhPQ=="),
        ("hmacsha1", "authId=LTAI5tDemoKey&securityToken=STS.demoToken&timestamp=1573489088171", "/lRfnA4xQepNd4yT0cH1N26gwA0="),
    ]
    for method, string_to_sign, password in vectors:
        assert do_sign("DemoSecret0123", string_to_sign, method) == password
    username, password = credentials("c", "LTAI5tDemoKey", "DemoSecret0123", timestamp="1573489088171",
                                     auth_mode="ststoken", security_token="STS.demoToken")
    assert password == "/lRfnA4xQepNd4yT0cH1N26gwA0="
    assert username == ("c|authMode=ststoken,securityToken=STS.demoToken,signMethod=hmacsha1,timestamp=1573489088171,"
                        "authId=LTAI5tDemoKey,iotInstanceId=,consumerGroupId=DEFAULT_GROUP|")


# --- (1) receiving ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ack", ["auto_accept", "explicit_accept_credit_1"])
def test_receives_messages_published_through_the_admin_api(start_emulator, ack):
    emulator = start_emulator(config())
    payload = '{"iotId":"x","productKey":"a1Interop","deviceName":"device-7","items":{"Power":{"value":"on","time":1510799670074}}}'
    before = int(time.time() * 1000)
    stacked_ids = emulator.publish(TOPIC, payload, count=3)  # waiting before anyone consumes
    options = {} if ack == "auto_accept" else {"credit_one_at_a_time": True}
    c = attached(client(emulator, "proton-receiver", **options))
    realtime_ids = emulator.publish(TOPIC, payload, count=4)
    published = stacked_ids + realtime_ids
    assert len(set(published)) == 7

    c.wait(lambda s: len(s.messages) >= 7, WAIT, "7 messages")
    after = int(time.time() * 1000)
    messages = list(c.messages)
    for m in messages:
        assert m["body"] == payload.encode(), m
        assert m["inferred"] is True, "the body is not one AMQP data section: %s" % m
        props = m["properties"]
        assert set(props) >= {"topic", "messageId", "generateTime"}, props
        assert type(props["topic"]) is str and props["topic"] == TOPIC, props  # str: AMQP string, not symbol
        assert type(props["messageId"]) is str, props
        # Proton maps AMQP long to plain int, and every other integer type to a subclass of int.
        assert type(props["generateTime"]) is int, "generateTime is %s, not an AMQP long" % type(props["generateTime"])
        assert before - 1000 <= props["generateTime"] <= after + 1000, props
    received_ids = [m["properties"]["messageId"] for m in messages]
    assert sorted(received_ids) == sorted(published)

    group = emulator.wait_for(emulator.group, lambda g: g["acknowledged"] == 7 and g["inFlight"] == 0, WAIT,
                              "acknowledged == 7 and inFlight == 0")
    assert group["delivered"] == 7 and group["backlog"] == 0 and group["published"] == 7, group
    [me] = group["clients"]
    assert me["clientId"] == "proton-receiver" and me["attached"] is True, me
    assert me["idleTimeoutMs"] == 30000, "Proton's heartbeat=60 should advertise 30000 ms: %s" % me
    assert me["acknowledged"] == 7, me

    c.stop()
    assert len(c.messages) == 7, "more deliveries than messages: %s" % [m["properties"] for m in c.messages]
    emulator.wait_for(emulator.group, lambda g: g["clients"] == [], WAIT, "the client to leave the group")
    assert emulator.refusals() == []
    assert_no_secret(emulator, AK_SECRET, c.password)


# --- (2) every signing method and auth mode -------------------------------------------------------


@pytest.mark.parametrize("auth_mode", ["aksign", "ststoken"])
@pytest.mark.parametrize("sign_method", ["hmacsha1", "hmacsha256", "hmacmd5", "Hmacsha1"])
def test_logs_in_with_every_sign_method_and_auth_mode(start_emulator, sign_method, auth_mode):
    emulator = start_emulator(config())
    client_id = "proton-%s-%s" % (auth_mode, sign_method)
    if auth_mode == "aksign":
        group, instance = "DEFAULT_GROUP", ""
        username, password = login(client_id, sign_method=sign_method)
    else:
        group, instance = "GROUP_A", INSTANCE
        username, password = credentials(client_id, STS_ID, STS_SECRET, consumer_group_id=group, iot_instance_id=instance,
                                         sign_method=sign_method, auth_mode="ststoken", security_token=STS_TOKEN)
    c = attached(SubscriptionClient(emulator.amqp_port, emulator.ca_pem, username, password).start())
    [message_id] = emulator.publish(TOPIC, "{}", group=group, instance=instance)
    c.wait(lambda s: len(s.messages) == 1, WAIT, "the message")
    assert c.messages[0]["properties"]["messageId"] == message_id
    [me] = emulator.group(group, instance)["clients"]
    assert me["clientId"] == client_id and me["attached"], me
    c.stop()
    assert emulator.refusals() == []
    assert_no_secret(emulator, AK_SECRET, STS_SECRET, STS_TOKEN, password)


# --- (3) refused at SASL ---------------------------------------------------------------------------


def sasl_case(client_id):
    """(username, password, reason words, secrets that must not leak) for each refused login."""
    now = str(int(time.time() * 1000))
    if client_id == "wrong-signature":
        username, _ = login(client_id)
        ts = username.split("timestamp=")[1].split(",")[0]
        return username, do_sign("not-the-secret", "authId=%s&timestamp=%s" % (AK_ID, ts)), ["signature mismatch", AK_ID]
    if client_id == "unknown-access-key":
        u, p = credentials(client_id, "LTAI5tNobody", "NobodySecret-123")
        return u, p, ["unknown accessKeyId", "LTAI5tNobody"]
    if client_id == "unknown-instance":
        u, p = login(client_id, iot_instance_id="iot-cn-nowhere")
        return u, p, ["unknown iotInstanceId", "iot-cn-nowhere"]
    if client_id == "unknown-group":
        u, p = login(client_id, consumer_group_id="NO_SUCH_GROUP")
        return u, p, ["unknown consumerGroupId", "NO_SUCH_GROUP"]
    if client_id == "malformed-no-block":
        return client_id, do_sign(AK_SECRET, "authId=%s&timestamp=%s" % (AK_ID, now)), ["malformed"]
    if client_id == "malformed-no-group":
        u, p = login(client_id)
        return u.replace(",consumerGroupId=DEFAULT_GROUP", ""), p, ["consumerGroupId"]
    if client_id == "wrong-sts-token":
        u, p = credentials(client_id, STS_ID, STS_SECRET, auth_mode="ststoken", security_token="CAIS+stale/Token999==")
        return u, p, ["securityToken", "not valid"]
    raise AssertionError(client_id)


SASL_CASES = ["wrong-signature", "unknown-access-key", "unknown-instance", "unknown-group",
              "malformed-no-block", "malformed-no-group", "wrong-sts-token"]


@pytest.mark.parametrize("case", SASL_CASES)
def test_refused_at_sasl(start_emulator, case):
    emulator = start_emulator(config())
    username, password, words = sasl_case(case)
    c = SubscriptionClient(emulator.amqp_port, emulator.ca_pem, username, password).start()
    c.wait(lambda s: s.ended(), WAIT, "the login to end")
    assert c.transport_condition is not None, "the bad login was not refused: %s" % c.state()
    assert c.transport_condition["name"] == "amqp:unauthorized-access", c.state()
    assert "Authentication failed" in (c.transport_condition["description"] or ""), c.state()
    assert not c.remote_opened and not c.receiver_attached() and not c.messages, c.state()
    c.stop()

    client_id = None if case.startswith("malformed") else case  # no clientId in an unparsable username
    rs = emulator.wait_for(emulator.refusals, lambda rs: len(rs) >= 1, WAIT, "the refusal")
    assert len(rs) == 1, rs
    [refusal] = rs
    assert refusal["stage"] == "sasl" and refusal["condition"] == "sasl:auth", refusal
    assert refusal["clientId"] == client_id, refusal
    for word in words:
        assert word in refusal["reason"], "%r not in the reason %r" % (word, refusal["reason"])
    assert emulator.group()["clients"] == []
    assert_no_secret(emulator, AK_SECRET, STS_SECRET, STS_TOKEN, "CAIS+stale/Token999==", "NobodySecret-123", password)


# --- (4) refused after the Open --------------------------------------------------------------------


@pytest.mark.parametrize("heartbeat,words", [
    (None, ["idle-time-out", "carried none"]),  # Proton sends no idle-time-out at all
    (10, ["idle-time-out 5000 ms", "30000..300000"]),  # Proton advertises heartbeat/2
    (30, ["idle-time-out 15000 ms", "30000..300000"]),
    (601, ["idle-time-out 300500 ms", "30000..300000"]),
])
def test_refused_for_the_idle_time_out(start_emulator, heartbeat, words):
    emulator = start_emulator(config())
    client_id = "proton-heartbeat-%s" % heartbeat
    c = client(emulator, client_id, heartbeat=heartbeat)
    assert_refused_after_open(emulator, c, client_id, "amqp:invalid-field", words)
    c.stop()
    assert emulator.group()["clients"] == []


@pytest.mark.parametrize("heartbeat", [60, 600])
def test_idle_time_out_bounds_are_inclusive(start_emulator, heartbeat):
    emulator = start_emulator(config())
    c = attached(client(emulator, "proton-heartbeat-%d" % heartbeat, heartbeat=heartbeat))
    [me] = emulator.group()["clients"]
    assert me["idleTimeoutMs"] == heartbeat * 500, me
    c.stop()
    assert emulator.refusals() == []


def test_refused_without_a_receiver_link_within_the_deadline(start_emulator):
    emulator = start_emulator(config(link_deadline_ms=1500))
    started = time.monotonic()
    lazy = client(emulator, "proton-no-link", links=())
    prompt = attached(client(emulator, "proton-prompt"))
    description = assert_refused_after_open(emulator, lazy, "proton-no-link", "amqp:connection:forced",
                                            ["no receiver link", "1500 ms"], stage="link")
    assert time.monotonic() - started >= 1.45, "closed before the deadline: %s" % description
    # (Proton's MessagingHandler does not answer a Close carrying amqp:connection:forced: it waits
    # for the peer to drop the transport. See the test below; here the client closes its side.)
    lazy.stop()
    # The client that attached in time is untouched by the deadline.
    assert prompt.receiver_attached() and not prompt.ended(), prompt.state()
    [message_id] = emulator.publish(TOPIC, "{}")
    prompt.wait(lambda s: len(s.messages) == 1, WAIT, "a message after the deadline")
    assert prompt.messages[0]["properties"]["messageId"] == message_id
    prompt.stop()


@pytest.mark.parametrize("second,words", [
    ("receiver", ["only one receiver link"]),
    ("sender", ["sender links are not allowed"]),
])
def test_link_refused_on_a_working_connection(start_emulator, second, words):
    emulator = start_emulator(config())
    c = client(emulator, "proton-two-links", links=("receiver", second))
    c.wait(lambda s: any(l["condition"] for l in s.links.values()) or s.ended(), WAIT, "a link to be refused")
    refused = [(n, l) for n, l in c.links.items() if l["condition"]]
    assert len(refused) == 1, c.state()
    name, link = refused[0]
    assert name == "%s-1" % second, "the wrong link was refused: %s" % c.state()
    assert link["condition"]["name"] == "amqp:not-allowed", link
    description = link["condition"]["description"]
    assert isinstance(description, str) and all(w in description for w in words), link
    refusal = refusal_for(emulator, "proton-two-links", "link")
    assert refusal["condition"] == "amqp:not-allowed" and refusal["reason"] == description, refusal

    # The connection and its first receiver link carry on.
    assert c.receiver_attached() and not c.ended() and c.connection_condition is None, c.state()
    ids = emulator.publish(TOPIC, "{}", count=2)
    c.wait(lambda s: len(s.messages) == 2, WAIT, "2 messages on the first link")
    assert sorted(m["properties"]["messageId"] for m in c.messages) == sorted(ids)
    assert {m["link"] for m in c.messages} == {"receiver-0"}
    emulator.wait_for(emulator.group, lambda g: g["acknowledged"] == 2 and g["inFlight"] == 0, WAIT, "2 acknowledged")
    c.stop()


def assert_a_third_is_refused_until_a_place_is_freed(emulator, prefix, words):
    """With a cap of 2: a third client is refused after its open, the first two carry on, and the place
    the first frees is taken by a fourth."""
    first = attached(client(emulator, prefix + "-1"))
    second = attached(client(emulator, prefix + "-2"))
    third = client(emulator, prefix + "-3")
    assert_refused_after_open(emulator, third, prefix + "-3", "amqp:resource-limit-exceeded", words)
    third.stop()
    assert first.receiver_attached() and second.receiver_attached()
    first.stop()
    emulator.wait_for(emulator.group, lambda g: len(g["clients"]) == 1, WAIT, "one client left")
    fourth = attached(client(emulator, prefix + "-4"))
    second.stop()
    fourth.stop()


def test_client_cap_per_group(start_emulator):
    emulator = start_emulator(config(client_cap_per_group=2))
    assert_a_third_is_refused_until_a_place_is_freed(emulator, "proton-cap", ["DEFAULT_GROUP", "2 clients"])


def test_connection_cap_per_instance(start_emulator):
    emulator = start_emulator(config(connection_cap_per_instance=2))
    assert_a_third_is_refused_until_a_place_is_freed(emulator, "proton-conn", ["instance", "2 connections"])


def test_connection_attempts_per_minute(start_emulator):
    emulator = start_emulator(config(connection_attempts_per_minute=3))
    # A refused login counts as an attempt too.
    username, _ = login("proton-attempt-1")
    bad = SubscriptionClient(emulator.amqp_port, emulator.ca_pem, username, "bm90LXRoZS1zaWduYXR1cmU=").start()
    bad.wait(lambda s: s.ended(), WAIT, "the bad login to end")
    assert bad.transport_condition and bad.transport_condition["name"] == "amqp:unauthorized-access", bad.state()
    bad.stop()
    for n in (2, 3):
        ok = attached(client(emulator, "proton-attempt-%d" % n))
        ok.stop()
    fourth = client(emulator, "proton-attempt-4")
    assert_refused_after_open(emulator, fourth, "proton-attempt-4", "amqp:resource-limit-exceeded",
                              ["too many connection attempts", "DEFAULT_GROUP", "limit is 3"])
    fourth.stop()


# A sample-style client does not answer a forced Close: it waits for the server to drop the socket.


def test_emulator_drops_the_transport_after_a_forced_close(start_emulator):
    emulator = start_emulator(config(link_deadline_ms=1000))
    lazy = client(emulator, "proton-no-link", links=())
    lazy.wait(lambda s: s.connection_condition is not None or s.ended(), WAIT, "the forced Close")
    assert lazy.connection_condition and lazy.connection_condition["name"] == "amqp:connection:forced", lazy.state()
    try:
        # The emulator's own grace period for the client's Close is 5 s.
        lazy.wait(lambda s: s.ended(), 7, "the emulator to drop the transport after its forced Close")
    finally:
        lazy.stop()


def test_reconnecting_client_resumes_after_the_drop_connections_fault(start_emulator):
    emulator = start_emulator(config())
    c = attached(client(emulator, "proton-reconnecting", reconnect=True))
    try:
        dropped = emulator._request("POST", "/admin/faults", {"action": "drop-connections", "consumerGroupId": "DEFAULT_GROUP"})
        assert dropped["dropped"] == 1, dropped
        # The sample's client reconnects once the transport is gone; its backoff grows under load, hence the generous deadline.
        c.wait(lambda s: s.opens >= 2 and s.receiver_attached(), 30, "Proton to reconnect after the drop")
        [message_id] = emulator.publish(TOPIC, "{}")
        c.wait(lambda s: any(m["properties"]["messageId"] == message_id for m in s.messages), WAIT, "a message after reconnecting")
    finally:
        c.stop()


# --- other message shapes: a third-party decoder reads the emulator's encodings as the AMQP types ---


def test_proton_decodes_every_message_shape_as_its_amqp_type(start_emulator):
    import uuid

    import proton

    emulator = start_emulator(config())
    c = attached(client(emulator, "proton-shapes"))
    cases = [
        ({"messageId": "ulong"}, "x", lambda id, p, m: type(p["messageId"]) is proton.ulong and str(int(p["messageId"])) == id),
        ({"messageId": "uuid"}, "x", lambda id, p, m: isinstance(p["messageId"], uuid.UUID) and str(p["messageId"]) == id),
        ({"messageId": "binary"}, "x", lambda id, p, m: bytes(p["messageId"]).hex() == id),
        ({"messageId": "absent", "generateTime": "string"}, "x",
         lambda id, p, m: id is None and "messageId" not in p and type(p["generateTime"]) is str),
        ({"body": "amqp-value"}, '{"a": 1, "b": [true, null, "x"]}',
         lambda id, p, m: m["inferred"] is False and m["body"] == {"a": 1, "b": [True, None, "x"]}),
        ({"body": "amqp-sequence"}, '[1, "two"]', lambda id, p, m: m["inferred"] is True and m["body"] == [1, "two"]),
    ]
    for n, (shape, payload, check) in enumerate(cases, start=1):
        [message_id] = emulator.publish_shaped(TOPIC, payload, shape)
        c.wait(lambda s: len(s.messages) >= n, WAIT, "the message of shape %s" % shape)
        m = c.messages[n - 1]
        assert check(message_id, m["properties"], m), "shape %s, reply id %r, Proton read %s" % (shape, message_id, m)
    emulator.wait_for(emulator.group, lambda g: g["acknowledged"] == len(cases), WAIT, "every shape acknowledged")
    c.stop()
