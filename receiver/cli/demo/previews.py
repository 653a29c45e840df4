"""The demo's loopback stand-ins for the chat services, in threads of this process: a Teams
Workflows webhook that appends each Adaptive Card posted to it to a file, and the Slack Web
API stand-in (receiver.simulator.slack) recording the Slack app sink's calls."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from receiver.cli.demo.processes import free_port


class TeamsPreview:
    """A loopback stand-in for a Teams Workflows webhook: appends each posted card to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received = 0
        lock = threading.Lock()
        preview = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    card = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with lock, preview.path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(card, separators=(",", ":")) + "\n")
                    preview.received += 1
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/workflows/demo-teams-channel"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="teams-preview", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(5)
        self.server.server_close()


class SlackPreview:
    """The Slack Web API stand-in (receiver.simulator.slack) on loopback, in a thread: the
    Slack app sink's calls (chat.postMessage, chat.update, thread replies) as JSON lines."""

    TOKEN = "xoxb-demo-0000-not-a-real-token"  # noqa: S105 - the local stand-in's token
    CHANNEL = "C0SECALRTS"

    def __init__(self, path: Path) -> None:
        import uvicorn

        from receiver.simulator.slack import SlackStandIn

        self.standin = SlackStandIn(token=self.TOKEN, jsonl=path)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/api/"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.standin.app,
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
                loop="asyncio",
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="slack-preview", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(5)
