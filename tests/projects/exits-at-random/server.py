"""Serves on 8000, and dies on a request to /crash, as a flaky model server would."""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Flaky(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.endswith("/crash"):
            print("crashing on purpose", flush=True)
            os._exit(1)
        body = f"alive, pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", 8000), Flaky).serve_forever()
