import numpy


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"numpy {numpy.__version__}: {int(numpy.arange(4).sum())}\n".encode()]
