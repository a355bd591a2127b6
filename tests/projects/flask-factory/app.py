from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def root() -> dict[str, str]:
        return {"served_by": "flask"}

    return app
