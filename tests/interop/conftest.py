"""Fixtures for the third-party-client tests: the emulator as a real process on loopback ports."""

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[2]


def emulator_binary():
    bin_dir = os.environ.get("IOTSUB_BIN_DIR")
    path = Path(bin_dir) / "iotsub-emulator" if bin_dir else REPO / "target" / "debug" / "iotsub-emulator"
    if not path.is_file():
        pytest.fail("%s is missing: run `cargo build --workspace --bins` (or `make interop`)" % path)
    return path


class Emulator:
    """One `iotsub-emulator` process: AMQP over TLS and the admin API on ephemeral loopback ports."""

    def __init__(self, state_dir, config):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.state_dir / "emulator.toml"
        self.config_path.write_text(config)
        self.log_path = self.state_dir / "emulator.log"
        self.ca_pem = self.state_dir / "ca.pem"
        env = dict(os.environ, RUST_LOG=os.environ.get("EMULATOR_LOG", "info"))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(emulator_binary()), "--config", str(self.config_path), "--amqp-addr", "127.0.0.1:0",
                 "--api-addr", "127.0.0.1:0", "--state-dir", str(self.state_dir)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            endpoints = self._wait_for_endpoints(timeout=20)
        except BaseException:
            self.stop()
            raise
        self.amqp_port = int(endpoints["amqp"].rsplit(":", 1)[1])
        self.api = "https://" + endpoints["api"]
        self.api_tls = ssl.create_default_context(cafile=str(self.ca_pem))

    def _wait_for_endpoints(self, timeout):
        path = self.state_dir / "endpoints.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("the emulator exited with %s before listening:\n%s" % (self.process.returncode, self.log()))
            if path.exists() and self.ca_pem.exists():
                try:
                    return json.loads(path.read_text())
                except ValueError:
                    pass  # written atomically, but be safe
            time.sleep(0.02)
        raise AssertionError("the emulator wrote no endpoints.json within %ss:\n%s" % (timeout, self.log()))

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # --- admin API ----------------------------------------------------------------------------

    def _request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.api_tls) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise AssertionError("%s %s -> %s: %s" % (method, path, e.code, e.read().decode(errors="replace")))

    def publish(self, topic, payload, count=1, group="DEFAULT_GROUP", instance=""):
        reply = self._request("POST", "/admin/messages", {
            "instanceId": instance, "consumerGroupId": group, "topic": topic, "payload": payload, "count": count})
        return reply["messageIds"]

    def publish_shaped(self, topic, payload, shape, count=1, group="DEFAULT_GROUP", instance=""):
        """Messages of another shape (`messageId`/`generateTime` types, `body`); returns their canonical ids."""
        reply = self._request("POST", "/admin/messages", {
            "instanceId": instance, "consumerGroupId": group, "topic": topic, "payload": payload, "count": count,
            "shape": shape})
        return reply["messageIds"]

    def group(self, group="DEFAULT_GROUP", instance=""):
        return self._request("GET", "/admin/consumer-groups/%s?instanceId=%s" % (group, instance))

    def refusals(self):
        return self._request("GET", "/admin/refusals")

    def refusals_text(self):
        return json.dumps(self.refusals())

    def wait_for(self, fetch, predicate, timeout, what):
        """Polls `fetch()` until `predicate(value)` holds; returns the value or fails with the last one."""
        deadline = time.monotonic() + timeout
        while True:
            value = fetch()
            if predicate(value):
                return value
            if time.monotonic() >= deadline:
                raise AssertionError("timed out after %ss waiting for %s; last: %s" % (timeout, what, json.dumps(value)[:2000]))
            time.sleep(0.05)


@pytest.fixture
def start_emulator(tmp_path):
    """start_emulator(config_toml) -> Emulator; every emulator started is stopped at the end of the test."""
    started = []

    def start(config=""):
        emulator = Emulator(tmp_path / ("emulator-%d" % len(started)), config)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
