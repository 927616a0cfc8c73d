"""`rlhf serve`: start the Streamlit labeling UI (an admin starts it; every page then
checks its own caller's role)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.cli.common import acting_user, int_in, transaction

MAIN = Path(__file__).resolve().parents[1] / "ui" / "main.py"
# Streamlit's server for MAIN plus our security headers and HttpOnly cookie route; `streamlit
# run` serves the st.App it finds there with the same flags as a plain script.
LAUNCHER = MAIN.with_name("rlhf_app.py")


def register(sub) -> None:
    p = sub.add_parser("serve", help="start the labeling UI in the browser (Streamlit)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int_in(1, 65535), default=8501)
    p.add_argument(
        "--max-upload-mb", type=int_in(1, 10_000), default=50, help="largest import upload"
    )
    p.set_defaults(func=serve)


def streamlit_command(host: str, port: int, max_upload_mb: int = 50) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(LAUNCHER),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.enableXsrfProtection", "true",
        "--server.enableCORS", "true",
        "--server.maxUploadSize", str(max_upload_mb),
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--global.developmentMode", "false",
    ]  # fmt: skip


def serve(args) -> int:
    from labeling import migrate
    from labeling.db import make_engine

    engine = make_engine()
    if migrate.current(engine) != migrate.head():
        print("error: the database is not migrated: run `rlhf db upgrade` (or `rlhf demo`)",
              file=sys.stderr)  # fmt: skip
        return 1
    with transaction() as s:
        acting_user(s, args, action="serve")
    port_free(args.host, args.port)
    command = streamlit_command(args.host, args.port, args.max_upload_mb)
    print(f"serving on http://{args.host}:{args.port}  (Ctrl+C stops)", flush=True)
    os.execv(command[0], command)
    return 0  # not reached


def port_free(host: str, port: int) -> None:
    """Say so now if the port is taken, instead of "serving on ..." and then Streamlit's
    own failure (or a silent move to another port)."""
    import errno
    import socket

    from labeling.errors import Conflict, InvalidInput

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot serve on host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(
                    f"port {port} on {host} is in use (another `rlhf serve`?): "
                    "stop it or pass --port"
                ) from None
            raise InvalidInput(f"cannot serve on {host}:{port}: {exc.strerror}") from None
