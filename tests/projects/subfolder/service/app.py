"""The server of a repository whose code lives in a subfolder."""

from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = Path("message.txt").read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", 8000), Hello).serve_forever()
