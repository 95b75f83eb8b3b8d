"""Start the reservation server: ``python server.py [--port 8000] [--workers N] ...``.

With no configuration it starts a local Ray head and uses the embedded SQLite store
under ./var; ``RAY_ADDRESS`` and ``RESERVATION_DATABASE_URL`` (or the flags) point it
at a Ray cluster and a MySQL/MariaDB database. See ``python server.py --help``.
"""

from reservation.cli import serve_main

if __name__ == "__main__":
    serve_main()
