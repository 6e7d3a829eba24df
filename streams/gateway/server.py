"""`threatroute gateway --listen HOST:PORT`: build the services, serve with uvicorn."""

from __future__ import annotations

import logging
import signal
import threading

import uvicorn

from threatroute.errors import ConfigError
from threatroute.streams.config import Config
from threatroute.streams.gateway.app import create_app
from threatroute.streams.gateway.auth import Guard
from threatroute.streams.gateway.services import Services
from threatroute.streams.gateway.store import AlertStore, Directory, Writer
from threatroute.streams.runtime.metrics import Metrics

log = logging.getLogger(__name__)


def listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"--listen wants HOST:PORT, got {text!r}") from None
    if not host or not 0 < number < 65536:
        raise ConfigError(f"--listen wants HOST:PORT, got {text!r}")
    return host.strip("[]"), number


def serve(config: Config, listen: str, certfile: str | None = None,
          keyfile: str | None = None, metrics: Metrics | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both and drains open requests)."""
    if bool(certfile) != bool(keyfile):
        raise ConfigError("TLS needs both --certfile and --keyfile")
    host, port = listen_address(listen)
    metrics = metrics or Metrics()
    directory = Directory(config).start()
    store, writer = AlertStore(config), Writer(config)
    svc = Services(config, store, directory, writer, Guard(directory, config.gateway), metrics)
    metrics.serve(config.metrics_port, config.metrics_address)
    scheme = "https" if certfile else "http"
    log.info("gateway on %s://%s:%d (TAXII 2.1 at /taxii2/, page at /desk)", scheme, host, port)
    # uvicorn drains open requests on SIGTERM, then raises the signal again for whatever
    # handler was there before it: with this one the gateway then exits 0, not -15
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stopping)
    try:
        uvicorn.run(create_app(svc), host=host, port=port, ssl_certfile=certfile,
                    ssl_keyfile=keyfile, log_level="warning", access_log=False,
                    server_header=False)
    finally:
        writer.close()
        store.close()
        directory.stop()


def _stopping(signum: int, _frame: object) -> None:
    log.info("signal %d: gateway stopped", signum)
