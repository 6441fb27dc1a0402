#!/usr/bin/env python3
"""An ordinary XMPP client (slixmpp) driven by the end-to-end tests.

Usage: xmpp_client.py JID PASSWORD HOST PORT

Reads JSON commands from stdin, one per line:
  {"message": {"to": "bob@example.org", "body": "hi"}}
  {"message": {"to": "bob@example.org/phone", "body": "hi", "private": true}}
  {"carbons": true}                      (XEP-0280 enable; answers "carbons-enabled")
  {"raw": "<message to='@@' ...>...</message>"}
  {"subscribe": "bob@example.org"}
  {"presence": {}}
  {"quit": true}
and prints JSON events on stdout, one per line:
  {"event": "online", "jid": "..."}
  {"event": "message", "from": "...", "body": "...", "type": "...", "delay": "stamp"|null}
  {"event": "carbon", "kind": "received"|"sent", "from": "...", "to": "...", "body": "..."}
  {"event": "presence", "from": "...", "type": "available"}
  {"event": "error", "from": "...", "condition": "...", "text": "..."}  (a bounced message)
  {"event": "failed", "why": "..."}
XOR_SASL_MECH in the environment restricts SASL to that mechanism.
The server certificate is not checked: the node's local port uses a self-signed one.
"""

import asyncio
import json
import os
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath


def emit(**event):
    print(json.dumps(event), flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        # XOR_SASL_MECH: log in with that SASL mechanism only.
        super().__init__(jid, password, sasl_mech=os.environ.get("XOR_SASL_MECH"))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ssl_context = ctx
        # The local port offers STARTTLS only (RFC 6120), not direct TLS.
        self.enable_direct_tls = False
        self.enable_plaintext = False
        self.auto_authorize = True
        self.auto_subscribe = True
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        # Carbons (XEP-0280) are matched by hand so that the events report the
        # wrapped message exactly as it came. A carbon has no body of its own, so
        # slixmpp's "message" event does not fire for it. (Messages once missed
        # with the xep_0280 plugin loaded were the collected commands task below.)
        for kind in ("received", "sent"):
            self.register_handler(
                Callback(
                    "carbon " + kind,
                    MatchXPath("{jabber:client}message/{urn:xmpp:carbons:2}" + kind),
                    self.on_message,
                )
            )
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("message_error", self.on_message)
        self.add_event_handler("presence", self.on_presence)
        self.add_event_handler("failed_auth", lambda _: emit(event="failed", why="auth"))
        self.add_event_handler(
            "connection_failed", lambda e: emit(event="failed", why=str(e))
        )

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        emit(event="online", jid=str(self.boundjid))
        # Held here: the loop keeps only a weak reference to a task, and the stdin
        # reader is held weakly by its protocol, so an unreferenced commands task is
        # collected by the cycle GC mid-test ("Task was destroyed but it is
        # pending!") and the client silently stops obeying (what made the carbons
        # plugin look guilty once: it only allocated more).
        self.commands_task = asyncio.get_event_loop().create_task(self.commands())

    def on_message(self, msg):
        for kind in ("received", "sent"):
            wrapper = msg.xml.find("{urn:xmpp:carbons:2}" + kind)
            if wrapper is None:
                continue
            inner = wrapper.find(
                "{urn:xmpp:forward:0}forwarded/{jabber:client}message"
            )
            body = None if inner is None else inner.find("{jabber:client}body")
            emit(
                event="carbon",
                kind=kind,
                **{
                    "from": "" if inner is None else inner.get("from", ""),
                    "to": "" if inner is None else inner.get("to", ""),
                    "wrapper_from": str(msg["from"]),
                },
                body=None if body is None else body.text,
            )
            return
        if msg["type"] == "error":
            emit(
                event="error",
                **{"from": str(msg["from"])},
                condition=msg["error"]["condition"],
                text=msg["error"]["text"],
            )
            return
        delay = msg.xml.find("{urn:xmpp:delay}delay")
        emit(
            event="message",
            **{"from": str(msg["from"])},
            body=msg["body"],
            type=msg["type"],
            delay=None if delay is None else delay.get("stamp"),
        )

    def on_presence(self, p):
        emit(event="presence", **{"from": str(p["from"])}, type=p["type"])

    async def commands(self):
        loop = asyncio.get_event_loop()
        reader = self.stdin_reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
        )
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            if "message" in cmd:
                m = cmd["message"]
                msg = self.make_message(mto=m["to"], mbody=m["body"], mtype="chat")
                if m.get("private"):
                    msg.xml.append(ET.Element("{urn:xmpp:carbons:2}private"))
                msg.send()
            elif "carbons" in cmd:
                iq = self.make_iq_set()
                iq.xml.append(ET.Element("{urn:xmpp:carbons:2}enable"))
                await iq.send()
                emit(event="carbons-enabled")
            elif "raw" in cmd:
                self.send_raw(cmd["raw"])
            elif "subscribe" in cmd:
                self.send_presence_subscription(pto=cmd["subscribe"])
            elif "presence" in cmd:
                self.send_presence()
            elif "quit" in cmd:
                break
        self.disconnect()


def main():
    jid, password, host, port = sys.argv[1:5]
    client = Client(jid, password)
    client.connect(host, int(port))
    def disconnected(reason):
        # Said on stderr too: a test that misses messages shows why its client left.
        print(f"xmpp_client {jid}: disconnected ({reason})", file=sys.stderr, flush=True)
        emit(event="disconnected", why=str(reason))
        client.loop.stop()

    client.add_event_handler("disconnected", disconnected)
    client.add_event_handler(
        "stream_error",
        lambda e: print(f"xmpp_client {jid}: stream error {e}", file=sys.stderr, flush=True),
    )
    client.loop.run_forever()


if __name__ == "__main__":
    main()
