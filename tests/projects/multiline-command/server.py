"""Greets with what its command exported."""

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Greet(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{os.environ['GREETING']}, {sys.argv[1]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(sys.argv[2])), Greet).serve_forever()
