"""An SMTP sink for the tests: every message is written, once per recipient,
to a folder; recipients whose address starts with "fail-once" are refused
with a temporary error the first time they are seen, and those starting with
"fail-always" every time.

    python3 .ci/smtp_sink.py --port 2525 --dir /tmp/spanglish-smtp-sink
"""

import argparse
import os
import time
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.refused_once = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.lower()
        if local.startswith("fail-always"):
            return "451 4.3.0 temporarily refused (fail-always)"
        if local.startswith("fail-once") and local not in self.refused_once:
            self.refused_once.add(local)
            return "451 4.3.0 temporarily refused (fail-once)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for recipient in envelope.rcpt_tos:
            name = f"{recipient.lower()}--{time.time_ns()}-{uuid.uuid4().hex}.eml"
            with open(os.path.join(self.folder, name), "wb") as out:
                out.write(envelope.original_content or envelope.content)
        return "250 Message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", default="/tmp/spanglish-smtp-sink")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Sink(args.dir), hostname=args.host, port=args.port)
    controller.start()
    print(f"SMTP sink on {args.host}:{args.port}, writing to {args.dir}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
