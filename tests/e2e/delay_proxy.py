#!/usr/bin/env python3
"""tests/e2e/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_S LOG

A loopback TCP proxy between Postfix and rateguardd for the policy protocol. It holds back rateguardd's first
reply for DELAY_S seconds, so Postfix's policy client times out (smtpd_policy_service_timeout) and resends the
request on a new connection, as it does when the policy service is slow; everything else passes at once. Each
request that passes is logged to LOG as "request STATE RECIPIENT" (the resend test counts them). Ends when
killed."""
import asyncio
import sys

LISTEN, TARGET, DELAY, LOG = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
first_reply_held = False


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


async def requests(reader, writer):
    buf = b""
    while data := await reader.read(65536):
        buf += data
        while b"\n\n" in buf:
            req, buf = buf.split(b"\n\n", 1)
            attrs = dict(l.split(b"=", 1) for l in req.split(b"\n") if b"=" in l)
            log("request %s %s" % (attrs.get(b"protocol_state", b"").decode(), attrs.get(b"recipient", b"").decode()))
        writer.write(data)
        await writer.drain()
    writer.close()


async def replies(reader, writer):
    global first_reply_held
    while data := await reader.read(65536):
        if not first_reply_held:
            first_reply_held = True
            log("holding the first reply %.1f s" % DELAY)
            await asyncio.sleep(DELAY)
        writer.write(data)
        await writer.drain()
    writer.close()


async def serve(client_r, client_w):
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", TARGET)
        await asyncio.gather(requests(client_r, up_w), replies(up_r, client_w))
    except (ConnectionError, OSError):
        pass  # Postfix closed a timed-out connection: what is held back goes nowhere
    finally:
        client_w.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", LISTEN)
    async with server:
        await server.serve_forever()


asyncio.run(main())
