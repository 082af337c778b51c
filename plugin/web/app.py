"""The Flask app factory (as in Flask's own tutorial): blueprints over shared services."""

from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from plugin.config import Config
from plugin.core import trial
from plugin.services import Services, build
from plugin.web import api, banner, dashboard, health, i18n, predict, reports, times, webhooks, wecom_callback
from plugin.web import terms  # the pages' names for stored codes (emotions, statuses ...)
from plugin.web import admin_pages
from plugin.web import upload_page  # /upload: the tutorial's demo page, made useful
from plugin.web.auth import setup as auth
from plugin.web.converters import RowIdConverter
from plugin.web.paths import is_page
from plugin.web.proxy import TrustedProxies
from plugin.web.services import KEY


def create_app(config: Config | None = None, services: Services | None = None) -> Flask:
    if services is None:
        from plugin.config import load
        services = build(config or load())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = services.config.server.max_upload_bytes
    app.json.ensure_ascii = False
    app.extensions[KEY] = services
    app.url_map.converters["id"] = RowIdConverter
    i18n.init_app(app)  # zh-CN / en: ?lang=, a cookie, Accept-Language
    terms.init_app(app)  # {{ code | emotion_name }}, | status_name ... in the page's language
    auth.init_app(app, services)  # closed by default: login, tokens, CSRF, headers
    app.wsgi_app = TrustedProxies(app.wsgi_app, services.config.server.trusted_proxies)

    # base.html's banner on every page while a trial model (random weights) is loaded.
    app.context_processor(lambda: {"trial_model": trial.LABEL if services.model.trial else None})
    # The status banner (model, rules, failures of the last day), asked for when a page renders.
    app.context_processor(lambda: {"status_problems": banner.problems})
    app.jinja_env.filters["when"] = times.when  # times in the team's zone, and how long ago
    for bp in (webhooks.bp, wecom_callback.bp, api.bp, predict.bp, health.bp, dashboard.bp, reports.bp):
        app.register_blueprint(bp)
    app.register_blueprint(admin_pages.bp)  # /admin/rules, /admin/routing, /admin/users
    app.register_blueprint(upload_page.bp)  # /upload, in /predict's queue

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if is_page(request.path):  # pages for people; every other path answers in JSON
            return exc
        return jsonify(error=exc.description, status=exc.code), exc.code

    return app
