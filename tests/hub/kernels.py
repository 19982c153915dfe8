"""Code run in a user's kernel on their single-user server, through Jupyter's REST API and
kernel websocket (what the browser does), with the user's Hub token: the code runs as that
user's system account, in the kernel their server started."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import websocket  # websocket-client, a dependency of jupyter_server


@dataclass
class Reply:
    """What one execution printed, returned and raised."""

    stdout: str = ""
    stderr: str = ""
    result: str = ""
    error: str = ""  # "ename: evalue"
    traceback: list[str] = field(default_factory=list)

    def ok(self) -> Reply:
        assert not self.error, f"the kernel raised {self.error}:\n{self.stderr}\n" + "\n".join(self.traceback)
        return self


class Kernel:
    """A kernel on ``server`` (``http://127.0.0.1:PORT/user/NAME``), used with ``token``."""

    def __init__(self, server: str, token: str, *, timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.kernel_id = str(self._rest("POST", "/api/kernels", {"name": "python3"})["id"])
        self.session = uuid.uuid4().hex
        base = "ws" + self.server[len("http") :]
        self.ws_url = f"{base}/api/kernels/{self.kernel_id}/channels?session_id={self.session}"

    def _rest(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.server + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def pid_info(self) -> dict[str, Any]:
        """The kernel process's pid, uid and HOME, as the kernel itself reports them."""
        reply = self.run(
            "import os, json\n"
            "print(json.dumps({'pid': os.getpid(), 'uid': os.getuid(), 'home': os.environ.get('HOME')}))"
        )
        return dict(json.loads(reply.ok().stdout))

    def run(self, code: str, *, timeout: float | None = None) -> Reply:
        """Execute ``code``; wait until the kernel is idle again. A websocket per call: between
        calls nobody answers the server's pings, and it closes idle ones."""
        limit = timeout or self.timeout
        ws = websocket.create_connection(
            self.ws_url, header=[f"Authorization: token {self.token}"], timeout=limit
        )
        try:
            return self._execute(ws, code, limit)
        finally:
            ws.close()

    def _execute(self, ws: websocket.WebSocket, code: str, limit: float) -> Reply:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "session": self.session,
                        "username": "",
                        "version": "5.3",
                        "date": "",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "buffers": [],
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        # an error must not abort the next call (an aborted request gets no idle status)
                        "stop_on_error": False,
                    },
                }
            )
        )
        reply = Reply()
        deadline = time.monotonic() + limit
        while True:
            # short reads: the server's pings, answered inside recv, would otherwise keep a
            # long read from ever timing out
            ws.settimeout(5.0)
            try:
                msg = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                if time.monotonic() < deadline:
                    continue
                raise TimeoutError(
                    f"the kernel did not finish in {limit} s: {code[:200]!r}; so far {reply}"
                ) from None
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    reply.stdout += content["text"]
                else:
                    reply.stderr += content["text"]
            elif kind == "execute_result":
                reply.result = content["data"].get("text/plain", "")
            elif kind == "error":
                reply.error = f"{content['ename']}: {content['evalue']}"
                reply.traceback = content["traceback"]
            elif kind == "execute_reply" and content["status"] == "aborted":
                reply.error = "aborted: the kernel dropped this request after an earlier error"
                return reply
            elif kind == "status" and content["execution_state"] == "idle":
                return reply

    def close(self) -> None:
        self._rest("DELETE", f"/api/kernels/{self.kernel_id}")
