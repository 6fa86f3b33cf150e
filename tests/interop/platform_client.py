"""An AMQP subscription client built on Apache Qpid Proton, the way the platform's Python 2.7 sample
builds it (MessagingHandler + Container, amqps, SASL PLAIN with the signed username, heartbeat=60),
plus what a test needs: it records every outcome (opened, messages, link and connection conditions,
transport errors) and runs on its own thread with a deadline, so a test waits on conditions, not on
sleeps.
"""

import base64
import hashlib
import hmac
import threading
import time

from proton import Endpoint, SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container

DIGESTS = {"hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256, "hmacmd5": hashlib.md5}


def current_time_millis():
    return str(int(round(time.time() * 1000)))


def do_sign(secret, sign_content, sign_method="hmacsha1"):
    """base64(HMAC-<method>(key=secret, data=sign_content)), as the sample's do_sign."""
    digest = DIGESTS[sign_method.lower()]
    mac = hmac.new(secret.encode("utf-8"), sign_content.encode("utf-8"), digestmod=digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def credentials(client_id, access_key_id, access_key_secret, consumer_group_id="DEFAULT_GROUP",
                iot_instance_id="", sign_method="hmacsha1", auth_mode="aksign", security_token=None,
                timestamp=None):
    """(userName, password) as the platform's guide assembles them; signed afresh unless `timestamp`."""
    timestamp = timestamp or current_time_millis()
    signed = {"authId": access_key_id, "timestamp": timestamp}
    params = "authMode=" + auth_mode
    if security_token is not None:
        signed["securityToken"] = security_token
        params += ",securityToken=" + security_token
    params += (",signMethod=" + sign_method + ",timestamp=" + timestamp + ",authId=" + access_key_id
               + ",iotInstanceId=" + iot_instance_id + ",consumerGroupId=" + consumer_group_id)
    string_to_sign = "&".join("%s=%s" % (k, signed[k]) for k in sorted(signed))
    return client_id + "|" + params + "|", do_sign(access_key_secret, string_to_sign, sign_method)


def condition_of(endpoint_condition):
    if endpoint_condition is None:
        return None
    return {"name": endpoint_condition.name, "description": endpoint_condition.description}


class SubscriptionClient(MessagingHandler):
    """One connection to the emulator. `links` lists what to attach: "receiver" and/or "sender".

    Recorded (read under `self.cond`): remote_opened, links[name] = {role, opened, condition},
    connection_condition, transport_condition, transport_closed, messages.
    """

    POLL_S = 0.05

    def __init__(self, amqp_port, ca_pem, username, password, heartbeat=60, links=("receiver",),
                 credit_one_at_a_time=False, reconnect=False, host="localhost"):
        # The sample's MessagingHandler() defaults: prefetch 10, auto-accept. credit_one_at_a_time:
        # no prefetch, accept each delivery explicitly, then grant one more credit. (Proton's own
        # FlowController with a window of 1 stalls after the first message: it tops up on the
        # delivery event, before the delivery is advanced and the credit consumed.)
        if credit_one_at_a_time:
            super(SubscriptionClient, self).__init__(prefetch=0, auto_accept=False)
        else:
            super(SubscriptionClient, self).__init__()
        self.credit_one_at_a_time = credit_one_at_a_time
        # False: every refusal is seen once and every attempt is the test's own. True: Proton's
        # default reconnect (Backoff), as the sample has it.
        self.reconnect = reconnect
        self.url = "amqps://%s:%d" % (host, amqp_port)
        self.ca_pem = str(ca_pem)
        self.username = username
        self.password = password
        self.heartbeat = heartbeat
        self.wanted_links = list(links)
        self.cond = threading.Condition()
        self.remote_opened = False
        self.opens = 0
        self.links = {}
        self.connection_condition = None
        self.connection_remote_closed = False
        self.transport_condition = None
        self.transport_closed = False
        self.messages = []
        self.errors = []
        self._stop_requested = False
        self._closing_since = None
        self._conn = None
        self._container = None
        self._thread = None

    # --- driving -------------------------------------------------------------------------------

    def start(self):
        self._container = Container(self)
        self._thread = threading.Thread(target=self._run, name="proton-" + self.username.split("|")[0], daemon=True)
        self._thread.start()
        return self

    def _run(self):
        try:
            self._container.run()
        except Exception as e:  # surfaced by stop()
            with self.cond:
                self.errors.append(repr(e))
                self.cond.notify_all()

    def stop(self, timeout=10):
        """Closes the connection (if still up) and waits for the container thread to end."""
        with self.cond:
            self._stop_requested = True
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the Proton container did not stop within %ss" % timeout
        assert not self.errors, "the Proton container raised: %s" % self.errors

    def wait(self, predicate, timeout, what):
        """Waits until predicate(self) holds (checked under the lock); fails with `what` and the state."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %ss waiting for %s; client state: %s" % (timeout, what, self.state()))
                self.cond.wait(min(left, 0.2))

    def state(self):
        return {
            "remote_opened": self.remote_opened, "opens": self.opens, "links": self.links,
            "connection_condition": self.connection_condition, "transport_condition": self.transport_condition,
            "transport_closed": self.transport_closed, "messages": len(self.messages), "errors": self.errors,
        }

    def receiver_attached(self):
        return any(l["role"] == "receiver" and l["opened"] and l["condition"] is None and not l["closed"]
                   for l in self.links.values())

    def ended(self):
        return self.transport_closed

    def _update(self, fn):
        with self.cond:
            fn()
            self.cond.notify_all()

    # --- Proton events ------------------------------------------------------------------------

    def on_start(self, event):
        ssl_domain = SSLDomain(SSLDomain.MODE_CLIENT)
        ssl_domain.set_trusted_ca_db(self.ca_pem)
        ssl_domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
        # As the sample: url, user, password, heartbeat, ssl_domain (+ SASL PLAIN explicitly).
        self._conn = event.container.connect(
            url=self.url, user=self.username, password=self.password, heartbeat=self.heartbeat,
            ssl_domain=ssl_domain, sasl_enabled=True, allowed_mechs="PLAIN",
            reconnect=None if self.reconnect else False)
        for i, role in enumerate(self.wanted_links):
            name = "%s-%d" % (role, i)
            with self.cond:
                self.links[name] = {"role": role, "opened": False, "closed": False, "condition": None}
            if role == "receiver":
                event.container.create_receiver(self._conn, name=name)
            else:
                event.container.create_sender(self._conn, name=name)
        event.container.schedule(self.POLL_S, self)

    def on_timer_task(self, event):
        with self.cond:
            stop, done = self._stop_requested, self.transport_closed
        if done and not (self.reconnect and self._conn.state & Endpoint.LOCAL_ACTIVE):
            return  # nothing left: the container's run() returns
        if stop:
            if self._closing_since is None:
                self._closing_since = time.monotonic()
                self._conn.close()
            elif time.monotonic() - self._closing_since > 3:
                event.container.stop()
                return
        event.container.schedule(self.POLL_S, self)

    def on_connection_opened(self, event):
        def record():
            self.remote_opened = True
            self.opens += 1
            self.transport_closed = False  # a reconnect: this is a new transport
        self._update(record)

    def on_connection_remote_close(self, event):
        # Recorded here because MessagingHandler swallows amqp:connection:forced (it treats it as a
        # plain disconnect), and then closes our side as the sample would.
        def record():
            self.connection_remote_closed = True
            self.connection_condition = condition_of(event.connection.remote_condition)
        self._update(record)

    def on_connection_error(self, event):
        pass  # recorded in on_connection_remote_close

    def on_link_opened(self, event):
        name = event.link.name
        self._update(lambda: self.links.setdefault(name, {"role": "?", "closed": False, "condition": None}).update(opened=True))
        if self.credit_one_at_a_time and event.link.is_receiver:
            event.link.flow(1)

    def on_link_remote_close(self, event):
        name = event.link.name
        condition = condition_of(event.link.remote_condition)
        self._update(lambda: self.links[name].update(closed=True, condition=condition))

    def on_link_error(self, event):
        pass  # a refused link doesn't end the connection: the test decides

    def on_transport_error(self, event):
        condition = condition_of(event.transport.condition)
        self._update(lambda: setattr(self, "transport_condition", condition))
        # Without reconnect, any transport error ends the client; with it, only a refused login
        # does (as MessagingHandler's fatal_conditions).
        fatal = not self.reconnect or (condition and condition["name"] == "amqp:unauthorized-access")
        if fatal and event.connection is not None:
            event.connection.close()

    def on_transport_closed(self, event):
        self._update(lambda: setattr(self, "transport_closed", True))

    def on_message(self, event):
        message = event.message
        # Proton 0.40 hands a `data` section over as a memoryview into its own buffer: copy it now.
        record = {
            "body": bytes(message.body) if isinstance(message.body, (bytes, bytearray, memoryview)) else message.body,
            "body_type": type(message.body).__name__,
            "inferred": message.inferred,
            "properties": dict(message.properties or {}),
            "link": event.link.name,
        }
        if self.credit_one_at_a_time:
            self.accept(event.delivery)
            event.receiver.flow(1)
        self._update(lambda: self.messages.append(record))
