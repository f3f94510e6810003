"""gunicorn settings for the scrape test; the test adds bind."""

from prometheus_client import multiprocess

workers = 4
worker_class = "sync"
control_socket_disable = True
accesslog = None
loglevel = "warning"
timeout = 30
graceful_timeout = 5


def child_exit(server: object, worker: object) -> None:
    # prometheus_client's multiprocess mode: a dead worker's live gauges go.
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
