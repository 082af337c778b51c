"""Closed by default: every endpoint needs a login, an API token or (for one call's page)
a signed link, unless its view is marked public (marks.py). setup.py wires it into the
app: the gate, sessions (Flask-Login), CSRF (Flask-WTF), security headers, the login
pages and the account endpoints. commands.py is `callmood users` and `callmood tokens`.
"""
