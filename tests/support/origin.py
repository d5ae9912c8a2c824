"""A remote file server for URL-input tests, on loopback, with the misbehaviours a hostile origin shows.

Routes: /clip.mp4 (the file), /redirect-{metadata,private,v6,file,clip} (302 to the cloud metadata
address, a private address, IPv6 loopback, a file:// URL, and back to /clip.mp4), /huge (13 MB of zeros,
no length), /stall (headers and 100 bytes of a declared 50000, then silence), anything else 404.
Loopback is itself denied by the worker's network policy, so tests open it with MW_URL_ALLOW_NETWORKS.
"""
import http.server
import threading
import time


class _Handler(http.server.BaseHTTPRequestHandler):
    clip = None
    stall_seconds = 8

    def log_message(self, *args):
        pass

    def _redirect(self, target):
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        port = self.server.server_address[1]
        redirects = {"/redirect-metadata": "http://169.254.169.254/latest/meta-data/",
                     "/redirect-private": "http://10.0.0.1/clip.mp4",
                     "/redirect-v6": "http://[::1]/clip.mp4",
                     "/redirect-file": "file:///etc/passwd",
                     "/redirect-clip": f"http://127.0.0.1:{port}/clip.mp4"}
        if self.path == "/clip.mp4":
            with open(self.clip, "rb") as f:
                body = f.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path in redirects:
            self._redirect(redirects[self.path])
        elif self.path == "/huge":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"\0" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/stall":
            self.send_response(200)
            # Under any size cap a test sets, so only the stall can end the transfer.
            self.send_header("Content-Length", "50000")
            self.end_headers()
            self.wfile.write(b"\0" * 100)
            self.wfile.flush()
            time.sleep(self.stall_seconds)
        else:
            self.send_error(404)


def start(clip):
    """Serves clip on 127.0.0.1 (a free port) from a daemon thread; returns the server (.shutdown())."""
    handler = type("Origin", (_Handler,), {"clip": clip})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
