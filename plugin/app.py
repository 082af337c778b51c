"""The Flask app factory (as in Flask's own tutorial): blueprints over shared services."""

from __future__ import annotations

from flask import Flask, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from plugin.config import Config
from plugin.services import Services, build


def create_app(config: Config | None = None, services: Services | None = None) -> Flask:
    if services is None:
        from plugin.config import load
        services = build(config or load())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.config.server.max_upload_bytes
    app.json.ensure_ascii = False
    app.extensions["callmood"] = services

    from plugin import api, dashboard, demo, webhooks
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(demo.bp)
    app.register_blueprint(dashboard.bp)

    @app.get("/metrics")
    def metrics():
        return generate_latest(), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        # JSON errors for machines; the dashboard pages are the only HTML.
        if request.path.startswith(("/calls", "/dashboard")) or request.path == "/":
            return exc
        return jsonify(error=exc.description, status=exc.code), exc.code

    return app


def services() -> Services:
    return current_app.extensions["callmood"]
