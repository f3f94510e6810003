"""gunicorn settings for the end-to-end test; the test adds bind and preload.

Passed with ``-c`` so that no ``gunicorn.conf.py`` of the working directory
is picked up. gunicorn ignores settings it does not know, so the control
socket line is harmless on versions before 25.1.
"""

workers = 4
worker_class = "sync"
# One control socket path per user by default: two test runs would fight.
control_socket_disable = True
accesslog = None
loglevel = "warning"
timeout = 30
graceful_timeout = 5
