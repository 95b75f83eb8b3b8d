"""Joining Ray: the one place a process of the server calls ``ray.init``."""

from __future__ import annotations

import os
import signal
import threading

from reservation.config import Settings

# What a Ray started in this process reads from the environment (a value already set
# wins). RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps a local Ray on 127.0.0.1.
# RAY_worker_niceness=0: Ray runs its worker processes, event actors included, at nice
# 15 unless told otherwise, below the front ends and a database on the same node. An
# event actor is the one serial point of its event's bookings: while it waits for a
# core, every caller of that event waits with it. On the 2-core machine the engine
# benchmark committed 19,406 and 18,493 bookings/s at nice 15, 24,910 and 22,120 at 0
# (runs alternated). Nodes started with ``ray start`` need it in their own environment
# (cluster.yaml).
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_worker_niceness": "0"}


def local_ray_env() -> None:
    """Put ``LOCAL_RAY_ENV`` into this process's environment, keeping values already set."""
    for name, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(name, value)


def join_ray(settings: Settings, *, keep_sigterm: bool = False) -> str:
    """Join the Ray cluster at ``settings.ray_address``, or, without one, start a
    local Ray inside this process, listening on 127.0.0.1 only. Answers the cluster's
    address, for other processes to join.

    ``ray.init`` installs a SIGTERM handler that exits at once, from wherever the main
    thread is. With ``keep_sigterm`` the handler in place before stays: a front end
    started by uvicorn keeps uvicorn's, which stops taking connections and lets the
    requests being answered finish first.
    """
    local_ray_env()
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
