"""The gunicorn end-to-end test's parts: a switchable backend, a WSGI app, load.

``tests/shared/test_gunicorn_e2e.py`` runs them; see its docstring for the scenario.
"""
