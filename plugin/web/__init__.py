"""The web layer: the app factory (app.py) and its blueprints (webhooks, api, dashboard,
predict, health). Blueprints get the shared services from services.py."""
