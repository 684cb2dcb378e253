"""A scripted LLM judge: an OpenAI-compatible serving engine, run as a real process.

    python -m tests.families.judge PORT SCRIPT TOKEN

The gateway serves it as the engine of a judge family's base: it accepts the adapter the
gateway loads (POST /v1/load_lora_adapter, as vLLM names it) and answers chat completions.
It answers POST /v1/chat/completions with the scores SCRIPT (a JSON file, read on every
request so a test can change it) gives the conversation named in the request: the judge
prompt names it as "Conversation (ID):". Requests without "Bearer TOKEN" get 401. Every
request is appended to SCRIPT + ".log" as JSON, for the test to read what the judge saw.
"""

from __future__ import annotations

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    port, script, token = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with open(str(script) + ".log", "a") as log:
                log.write(json.dumps(request) + "\n")
            if self.headers.get("Authorization") != f"Bearer {token}":
                self._send(401, {"error": {"message": "bad key"}})
                return
            if self.path == "/v1/load_lora_adapter":
                self._send(200, {"loaded": request.get("lora_name")})
                return
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": "no such route"}})
                return
            text = request["messages"][-1]["content"]
            conversation = re.search(r"Conversation \(([^)]+)\):", text).group(1)
            scores = json.loads(script.read_text())[conversation]
            content = "Here is my grade.\n" + json.dumps({"scores": scores})
            self._send(
                200,
                {
                    "id": "judge-1",
                    "object": "chat.completion",
                    "model": request.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
