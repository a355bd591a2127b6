"""Serves on 8000 with a package its command installs when it starts."""

from http.server import BaseHTTPRequestHandler, HTTPServer

import six  # installed by the server command, not by the build


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"six {six.__version__}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", 8000), Hello).serve_forever()
