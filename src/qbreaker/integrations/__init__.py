"""Integrations with other libraries, each importing its library lazily.

``import qbreaker`` never imports this package; each module here is imported
by name (``qbreaker.integrations.prometheus``) and needs its extra installed.
"""
