"""A stand-in Data Service: a real HTTP server that records every request and answers as scripted.

In-process use (tests):
    ds = DataService().start()
    ds.script(503, 503, 200)            # the next answers, in order; then the default (200)
    ds.script(("retry_after", 503, "1")) # 503 with Retry-After: 1
    ds.script("stall")                  # never answer (the client times out)
    ds.script("drop")                   # close the connection without answering
    ds.script("garbage")                # answer bytes that are not HTTP, then close
    ds.clear_script()                   # forget answers not given yet
    ds.wait_for(lambda reqs: len(reqs) >= 3, timeout=20)
    ds.requests  -> [{"method", "path", "headers", "json", "status", "time"}]
    ds.stop()

As a program (the demo): python3 data_service.py PORT [LOG.jsonl] prints/appends one JSON line per request.
"""
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle holds the body back until the
        # client's delayed ACK, and every request would look 40 ms slower than the worker makes it.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        pass

    def _handle(self):
        service = self.server.service
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        action = service._next_action()
        if service.delay_s:
            time.sleep(service.delay_s)
        status, retry_after = 200, None
        if action == "stall":
            service._record(self, body, "stall")
            time.sleep(service.stall_s)
            self.close_connection = True
            return
        if action == "drop":
            service._record(self, body, "drop")
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if action == "garbage":
            service._record(self, body, "garbage")
            self.close_connection = True
            self.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\nProtocol mismatch.\r\n")
            return
        if isinstance(action, tuple):
            _, status, retry_after = action
        elif isinstance(action, int):
            status = action
        service._record(self, body, status)
        payload = b'{"ok": true}' if status < 300 else b'{"error": "scripted"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        if 300 <= status < 400:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.end_headers()
        self.wfile.write(payload)

    do_PATCH = _handle
    do_POST = _handle
    do_PUT = _handle
    do_GET = _handle


class DataService:
    def __init__(self, port=0, log_path=None):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.server.service = self
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests = []
        self.stall_s = 30
        self.delay_s = 0          # every answer waits this long (a slow Data Service; jobs take longer)
        self.default = 200
        self._script = []
        self._lock = threading.Condition()
        self._log_path = log_path
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def script(self, *actions):
        with self._lock:
            self._script.extend(actions)

    def clear_script(self):
        with self._lock:
            self._script = []

    def reset(self, default=200):
        with self._lock:
            self._script = []
            self.requests = []
            self.default = default

    def _next_action(self):
        with self._lock:
            return self._script.pop(0) if self._script else self.default

    def _record(self, handler, body, status):
        entry = {"method": handler.command, "path": handler.path, "headers": dict(handler.headers.items()),
                 "json": body, "status": status, "time": time.monotonic()}
        with self._lock:
            self.requests.append(entry)
            self._lock.notify_all()
        if self._log_path:
            with open(self._log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def wait_for(self, predicate, timeout=30):
        """Waits until predicate(requests) is true; returns the requests, or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"data service: condition not met in {timeout} s; "
                                       f"{len(self.requests)} request(s) seen")
                self._lock.wait(left)
            return list(self.requests)

    def reports_for(self, job_id, status=None):
        with self._lock:
            return [r for r in self.requests
                    if r["json"] and (r["json"].get("new_file") or {}).get("job_id") == job_id
                    and (status is None or r["status"] == status)]


if __name__ == "__main__":
    service = DataService(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
    print(f"data service listening on {service.url}", flush=True)
    try:
        service.server.serve_forever()
    except KeyboardInterrupt:
        pass
