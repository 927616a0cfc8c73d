"""`rlhf serve` runs our st.App launcher (security headers, HttpOnly cookie route) with
Streamlit's own flags; the browser tests check the headers and the cookie on a live server."""

from pathlib import Path

from streamlit.web.server.app_discovery import discover_asgi_app

from app.cli.serve_cmd import LAUNCHER, MAIN, streamlit_command


def test_serve_runs_the_launcher_with_streamlits_flags():
    command = streamlit_command("127.0.0.1", 8601, 7)
    assert command[1:5] == ["-m", "streamlit", "run", str(LAUNCHER)]
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert flags["--server.port"] == "8601" and flags["--server.maxUploadSize"] == "7"
    assert flags["--server.enableXsrfProtection"] == "true"
    assert flags["--global.developmentMode"] == "false"
    # Streamlit itself must recognise the launcher as an app to serve, or it would run it
    # as a plain script and the headers and cookie route would silently be missing.
    found = discover_asgi_app(Path(LAUNCHER))
    assert found.is_asgi_app and found.app_name == "app"
    assert MAIN.name in LAUNCHER.read_text(encoding="utf-8")


def test_serve_says_the_port_is_taken_before_saying_serving(cli, admin):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port), user=admin)
    assert result.code == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.err and "--port" in result.err
    assert "serving on" not in result.out


def test_help_texts_keep_their_line_breaks(cli):
    result = cli("train", "rl", "--help")
    assert result.code == 0
    # the recipe's docstring: its command lines stay one per line, as written
    lines = result.out.splitlines()
    assert any(line.strip().startswith("rlhf train rl --reward") for line in lines), result.out
