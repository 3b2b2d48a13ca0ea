"""The exporter's pure parts: listen addresses, systemd notification, logs, capabilities."""

import io
import logging
import socket

import pytest

from kcmp_monitor import caps
from kcmp_monitor.exporter import daemon
from kcmp_monitor.sinks import logs
from kcmp_monitor.errors import UsageError


@pytest.mark.parametrize("text, host, port, shown", [
    ("127.0.0.1:9041", "127.0.0.1", 9041, "127.0.0.1:9041"),
    (":9041", "", 9041, ":9041"),
    ("localhost:1", "localhost", 1, "localhost:1"),
    ("[::1]:65535", "::1", 65535, "[::1]:65535"),
])
def test_listen_addresses(text, host, port, shown):
    address = daemon.parse_listen_address(text)
    assert (address.host, address.port, str(address)) == (host, port, shown)


@pytest.mark.parametrize("text", ["9041", "host:", "host:0", "host:65536", "host:x",
                                  "::1:9041", "[nope]:9041", ""])
def test_bad_listen_addresses(text):
    with pytest.raises(UsageError, match="--web.listen-address"):
        daemon.parse_listen_address(text)


def test_default_port_is_outside_the_allocated_exporter_range():
    assert not 9100 <= daemon.DEFAULT_PORT <= 9999 and daemon.DEFAULT_PORT not in (9090, 9093)
    assert daemon.DEFAULT_ADDRESS.startswith("127.0.0.1:")


def test_bpf_stats_sysctl(tmp_path):
    path = tmp_path / "bpf_stats_enabled"
    path.write_text("1\n")
    assert daemon.bpf_stats_enabled(str(path))
    path.write_text("0\n")
    assert not daemon.bpf_stats_enabled(str(path))
    assert not daemon.bpf_stats_enabled(str(tmp_path / "missing"))


def test_notify_reaches_systemds_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        daemon.notify("READY=1")
        assert listener.recv(64) == b"READY=1"


def test_notify_is_silent_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    daemon.notify("READY=1")


@pytest.mark.parametrize("release, trace, keep", [
    ("6.18.44-fc", False, set()),
    ("5.19.0", False, set()),
    ("6.1.0-28-amd64", False, set()),
    ("5.18.19", False, {caps.CAP_BPF}),
    ("5.10.0-46-amd64", False, {caps.CAP_BPF}),
    ("6.18.44", True, {caps.CAP_SYS_PTRACE, caps.CAP_DAC_READ_SEARCH}),
])
def test_capabilities_kept_after_attach(release, trace, keep):
    assert caps.needed_after_attach(trace, release) == keep


@pytest.mark.parametrize("journald, line", [
    (True, "<4>disk \\x1b[2J full"),
    (False, "kcmp-monitor: warning: disk \\x1b[2J full"),
])
def test_log_lines(monkeypatch, journald, line):
    if journald:
        monkeypatch.setenv("JOURNAL_STREAM", "8:123")
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    logs.setup(out)
    logging.getLogger("kcmp_monitor.test").warning("disk \x1b[2J full")
    assert out.getvalue() == line + "\n"


def test_logfmt():
    assert logs.logfmt(a=1, b="two words", c=None, d=True, e='say "hi"', f="x=y", g="") == \
        'a=1 b="two words" d=true e="say \\"hi\\"" f="x=y" g=""'
    assert logs.logfmt(comm="\x1b]0;t\x07") == "comm=\\x1b]0;t\\x07"
