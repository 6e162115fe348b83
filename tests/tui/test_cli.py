"""``edge-agent tui``: options are checked before anything starts; the password never travels in argv."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.tui.run import PASSWORD_ENV, tui_args
from edge_agent.tui.settings import OperatorConfig

runner = CliRunner()


def test_bad_options_are_refused_naming_them():
    r = runner.invoke(app, ["tui", "--key-file", "/x/key.pem"])
    assert r.exit_code == 2 and "tls is false" in r.output
    r = runner.invoke(app, ["tui", "--mqtt-port", "70000"])
    assert r.exit_code == 2 and "port" in r.output
    r = runner.invoke(app, ["tui", "--topic-root", "a b"])
    assert r.exit_code == 2 and "topic_root" in r.output


def test_config_file_gives_the_broker(tmp_path):
    cfg = Path(__file__).resolve().parents[2] / "examples" / "agent.yaml"
    r = runner.invoke(app, ["tui", "-c", str(cfg), "--cert-file", "/x/c.pem"])
    assert r.exit_code == 2 and "tls is false" in r.output  # the config's own (plain) connection, plus ours


def test_web_sessions_get_every_option_but_the_password():
    op = OperatorConfig(
        host="10.0.0.2",
        port=8883,
        username="operator",
        password=SecretStr("s3cret-pw"),
        tls=True,
        ca_file=Path("/etc/ca.pem"),
        cert_file=Path("/etc/op.pem"),
        key_file=Path("/etc/op.key"),
        topic_root="site9",
    )
    args = tui_args(op)
    assert "s3cret-pw" not in " ".join(args)
    assert args == [
        "--mqtt-host", "10.0.0.2", "--mqtt-port", "8883", "--topic-root", "site9", "--username", "operator",
        "--tls", "--ca-file", "/etc/ca.pem", "--cert-file", "/etc/op.pem", "--key-file", "/etc/op.key",
    ]  # fmt: skip
    assert PASSWORD_ENV == "EDGESIGHT_TUI_PASSWORD"


def test_a_refused_option_never_echoes_the_password(tmp_path):
    from tests.secrets_audit import known_secret

    pw = known_secret("tui-operator-pw-0xA7")
    r = runner.invoke(app, ["tui", "--username", "op", "--password", pw, "--mqtt-port", "70000"])
    assert r.exit_code == 2 and "port" in r.output
    assert pw not in "".join(r.output.split()) and "Traceback" not in r.output


def test_password_file_option_is_read_and_checked(tmp_path):
    r = runner.invoke(app, ["tui", "--username", "op", "--password-file", str(tmp_path / "missing")])
    text = " ".join(r.output.split())  # rich wraps long lines at the terminal's width
    assert r.exit_code == 2 and "password_file" in text and "No such file" in text
    both = tmp_path / "pw"
    both.write_text("tui-file-pw-0xB8\n")
    r = runner.invoke(app, ["tui", "--username", "op", "--password", "x" * 20, "--password-file", str(both)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "not both" in text and "tui-file-pw-0xB8" not in "".join(r.output.split())
