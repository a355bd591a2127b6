"""Listens, but not on the port its valohai.yaml declares (8000)."""

from http.server import BaseHTTPRequestHandler, HTTPServer

HTTPServer(("0.0.0.0", 8001), BaseHTTPRequestHandler).serve_forever()
