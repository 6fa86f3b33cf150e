#!/usr/bin/env python3
"""The IoT Platform's official Python AMQP sample consumer (Apache Qpid Proton), for the side-by-side
benchmark in bench/compare.py.

As the sample: a MessagingHandler run by a Container, `amqps://host:port`, SASL PLAIN with the signed
username and password (signed afresh for each connection), heartbeat=60, one receiver per connection,
the handler's defaults (prefetch 10, auto-accept after on_message), and in on_message: decode the
body, read the properties, print one line (stdout goes to /dev/null), then `event.receiver.flow(1)`.

Changes for the benchmark, none in the message path: the emulator's CA is trusted through an
SSLDomain (peer name verified), and `--connections N` opens N connections named `<client-id>-<i>`
in the same Container (the sample opens one; Proton's Container is single-threaded, so this is how
one Python process holds several).

Flags: --host --port --client-id --connections --access-key-id --access-key-secret
--consumer-group-id --instance-id --sign-method --ca-file; each also reads IOTSUB_<FLAG>.
"""

import argparse
import base64
import hashlib
import hmac
import os
import signal
import sys
import time

from proton import SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container

DIGESTS = {"hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256, "hmacmd5": hashlib.md5}


def current_time_millis():
    return str(int(round(time.time() * 1000)))


def do_sign(secret, sign_content, sign_method):
    mac = hmac.new(secret, sign_content, digestmod=DIGESTS[sign_method.lower()])
    return base64.b64encode(mac.digest()).decode("ascii")


class AmqpClient(MessagingHandler):
    def __init__(self, args):
        super(AmqpClient, self).__init__()
        self.args = args
        self.connections = []
        self.processed = 0

    def on_start(self, event):
        a = self.args
        url = "amqps://%s:%d" % (a.host, a.port)
        ssl_domain = SSLDomain(SSLDomain.MODE_CLIENT)
        if a.ca_file:
            ssl_domain.set_trusted_ca_db(a.ca_file)
        ssl_domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
        for i in range(a.connections):
            client_id = "%s-%d" % (a.client_id, i) if a.connections > 1 else a.client_id
            timestamp = current_time_millis()
            user_name = (client_id + "|authMode=aksign,signMethod=" + a.sign_method + ",timestamp=" + timestamp
                         + ",authId=" + a.access_key_id + ",iotInstanceId=" + a.instance_id
                         + ",consumerGroupId=" + a.consumer_group_id + "|")
            sign_content = "authId=" + a.access_key_id + "&timestamp=" + timestamp
            password = do_sign(a.access_key_secret.encode("utf-8"), sign_content.encode("utf-8"), a.sign_method)
            conn = event.container.connect(url, user=user_name, password=password, heartbeat=60,
                                           ssl_domain=ssl_domain, sasl_enabled=True, allowed_mechs="PLAIN")
            self.connections.append(conn)
            event.container.create_receiver(conn)
        print("sample-python: %d connection(s) opening" % a.connections, file=sys.stderr, flush=True)

    def on_message(self, event):
        message = event.message
        content = bytes(message.body).decode("utf-8")
        topic = message.properties.get("topic")
        message_id = message.properties.get("messageId")
        generate_time = message.properties.get("generateTime")
        print("receive message: message_id=%s, topic=%s, generateTime=%s, content=%s"
              % (message_id, topic, generate_time, content))
        self.processed += 1
        event.receiver.flow(1)

    def stop(self):
        for conn in self.connections:
            conn.close()


def main():
    env = lambda flag, default=None: os.environ.get("IOTSUB_" + flag.upper().replace("-", "_"), default)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=env("host", "localhost"))
    p.add_argument("--port", type=int, default=int(env("port", "5671")))
    p.add_argument("--client-id", default=env("client-id", "sample-python"))
    p.add_argument("--connections", type=int, default=int(env("connections", "1")))
    p.add_argument("--access-key-id", default=env("access-key-id"))
    p.add_argument("--access-key-secret", default=env("access-key-secret"))
    p.add_argument("--consumer-group-id", default=env("consumer-group-id", "DEFAULT_GROUP"))
    p.add_argument("--instance-id", default=env("instance-id", ""))
    p.add_argument("--sign-method", default=env("sign-method", "hmacsha1"))
    p.add_argument("--ca-file", default=env("ca-file"))
    args = p.parse_args()
    if not args.access_key_id or not args.access_key_secret:
        p.error("--access-key-id and --access-key-secret are required")

    client = AmqpClient(args)
    container = Container(client)

    def on_signal(signum, frame):
        # Handled on the reactor's thread between events: close the connections, let run() return.
        client.stop()
        container.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        container.run()
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    print("sample-python: processed %d messages" % client.processed, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
