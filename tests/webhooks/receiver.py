"""A webhook receiver for the tests, run as its own process: it verifies each delivery with
the Standard Webhooks reference library (not with the service's signing code), logs what it
got as JSON lines, and answers as told: the first `--fail N` verified deliveries get a 500
(or a 429 with Retry-After when `--retry-after` is given), the rest a 204.

    python -m tests.webhooks.receiver SECRET LOG [--fail N] [--retry-after S]

With `--plain` it verifies nothing (an OpenLineage backend). It prints its port on the first
line of stdout once it listens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("secret")
    parser.add_argument("log")
    parser.add_argument("--fail", type=int, default=0)
    parser.add_argument("--retry-after", type=int)
    # Accept any POST (an OpenLineage backend): no signature to verify.
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    verifier = Webhook(args.secret)
    lock = threading.Lock()
    state = {"failures_left": args.fail}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if args.plain:
                event, verified = json.loads(body), True
            else:
                try:
                    event = verifier.verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    event, verified = None, False
            with lock:
                if not verified:
                    status = 401
                elif state["failures_left"] > 0:
                    state["failures_left"] -= 1
                    status = 429 if args.retry_after is not None else 500
                else:
                    status = 204
                with open(args.log, "a") as log:
                    log.write(
                        json.dumps(
                            {
                                "id": headers.get("webhook-id"),
                                "path": self.path,
                                "verified": verified,
                                "status": status,
                                "event": event,
                            }
                        )
                        + "\n"
                    )
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", str(args.retry_after))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
