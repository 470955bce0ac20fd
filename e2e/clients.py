"""The client matrix, python-socketio: WebSocket only and polling only.

For each, two fresh users connect with a token, one sends to the other with
an ack, the other receives the delivery, both disconnect and connect again
(a new session), and the same again.

    pip install -r requirements.txt
    PALAVER_URL=http://127.0.0.1:3000 python clients.py

One line per transport; exits 0 when all pass, 1 with the reason when one
fails. Fresh names each run, so it runs any number of times.
"""

import os
import random
import string
import sys
import threading
import time

import requests
import socketio

URL = os.environ.get("PALAVER_URL", "http://127.0.0.1:3000")
WAIT = 10  # seconds


class Failed(Exception):
    pass


def register(username):
    r = requests.post(
        f"{URL}/api/auth/register",
        json={"username": username, "password": "correct horse"},
        timeout=WAIT,
    )
    if r.status_code != 201:
        raise Failed(f"register {username}: {r.status_code} {r.text}")
    return r.json()


class Peer:
    """One user's python-socketio client, keeping every `message` it receives."""

    def __init__(self, who, account, transport):
        self.who = who
        self.account = account
        self.transport = transport
        self.inbox = []
        self.arrived = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("message", self._on_message)

    def _on_message(self, m):
        with self.arrived:
            self.inbox.append(m)
            self.arrived.notify_all()

    def connect(self):
        self.sio.connect(
            URL,
            auth={"token": self.account["token"]},
            transports=[self.transport],
            wait_timeout=WAIT,
        )
        if self.sio.transport() != self.transport:
            raise Failed(f"{self.who} is on {self.sio.transport()}, not {self.transport}")

    def reconnect(self):
        before = self.sio.get_sid()
        self.sio.disconnect()
        self.connect()
        if self.sio.get_sid() == before:
            raise Failed(f"{self.who} reconnected with the same socket id {before}")

    def send(self, to, content):
        ack = self.sio.call(
            "message",
            {"conversationType": "private", "receiverId": to, "content": content},
            timeout=WAIT,
        )
        if not isinstance(ack, dict) or ack.get("ok") is not True:
            raise Failed(f"send: {ack!r}")
        m = ack.get("message") or {}
        if not isinstance(m.get("id"), int) or not isinstance(m.get("seq"), int) or m.get("content") != content:
            raise Failed(f"send: the ack carries no stored message: {ack!r}")
        return m

    def delivery(self, message_id):
        def found():
            return next((m for m in self.inbox if m.get("id") == message_id), None)

        with self.arrived:
            if not self.arrived.wait_for(found, timeout=WAIT):
                raise Failed(f"no delivery of message {message_id} to {self.who} within {WAIT} s")
            return found()

    def close(self):
        self.sio.disconnect()


def exchange(a, b, content):
    """A sends to B: acked with the stored message, delivered with the same id."""
    sent = a.send(b.account["user"]["id"], content)
    got = b.delivery(sent["id"])
    if got.get("content") != content or got.get("seq") != sent["seq"]:
        raise Failed(f"delivered {got!r}, acked {sent!r}")
    return sent


def run(transport, tag):
    a = Peer("alice", register(f"pa_{tag}"), transport)
    b = Peer("bob", register(f"pb_{tag}"), transport)
    try:
        a.connect()
        b.connect()
        first = exchange(a, b, f"first over {transport}")
        for p in (a, b):
            if p.sio.transport() != transport:
                raise Failed(f"{p.who} moved to {p.sio.transport()}")
        a.reconnect()
        b.reconnect()
        second = exchange(a, b, f"again over {transport}")
        if second["seq"] != first["seq"] + 1:
            raise Failed(f"seq {first['seq']} then {second['seq']}")
        return (
            f"python {transport}: connected on {transport}, acked id {first['id']} seq {first['seq']}, delivered; "
            f"reconnected, acked id {second['id']} seq {second['seq']}, delivered"
        )
    finally:
        a.close()
        b.close()


def main():
    tag = format(int(time.time() * 1000), "x") + "".join(random.choices(string.ascii_lowercase, k=4))
    for i, transport in enumerate(["websocket", "polling"]):
        try:
            print(run(transport, f"{tag}{i}"), flush=True)
        except Exception as e:  # any failure, the client's own exceptions included
            print(f"python {transport}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
