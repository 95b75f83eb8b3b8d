"""Joining Ray: the one place a process of the server calls ``ray.init``."""

from __future__ import annotations

import os
import signal
import threading

from reservation.config import Settings


def join_ray(settings: Settings, *, keep_sigterm: bool = False) -> str:
    """Join the Ray cluster at ``settings.ray_address``, or, without one, start a
    local Ray inside this process, listening on 127.0.0.1 only. Answers the cluster's
    address, for other processes to join.

    ``ray.init`` installs a SIGTERM handler that exits at once, from wherever the main
    thread is. With ``keep_sigterm`` the handler in place before stays: a front end
    started by uvicorn keeps uvicorn's, which stops taking connections and lets the
    requests being answered finish first.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if keep_sigterm and main_thread else None
    ray.init(
        address=settings.ray_address or "local",
        namespace=settings.ray_namespace,
        log_to_driver=False,
        include_dashboard=False if settings.ray_address is None else None,
        configure_logging=False,
    )
    if on_sigterm is not None:
        signal.signal(signal.SIGTERM, on_sigterm)
    address: str = ray.get_runtime_context().gcs_address
    return address
