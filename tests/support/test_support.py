"""The test support itself: missing binaries fail with the cure, processes end with their owner."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import ManagedProcess, MissingBinaryError, free_port, port_open, require_binary, wait_until
from tests.support.prometheus import Prometheus, promtool_check_metrics
from tests.support.rotel import rotel_binary


def test_missing_binaries_name_the_cure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    cure = r"is not installed: run `bash scripts/system-deps.sh` \(or `make test`\)"
    with pytest.raises(MissingBinaryError, match=rf"^'prometheus' {cure}$"):
        Prometheus(["127.0.0.1:1"])
    with pytest.raises(MissingBinaryError, match=rf"^'promtool' {cure}$"):
        promtool_check_metrics("")
    with pytest.raises(MissingBinaryError, match=r"^'wrk' is not installed: ask$"):
        require_binary("wrk", hint="ask")


def test_rotel_binary_ships_in_the_wheel() -> None:
    path = Path(rotel_binary())
    assert path.name == "rotel-agent"
    assert path.is_file()


def test_prometheus_config_is_what_it_runs_with() -> None:
    prometheus = Prometheus(["127.0.0.1:9464"], scrape_interval=0.25, rule_files=["rules.yml"])
    config = prometheus.config_text()
    assert '"scrape_interval": "250ms"' in config
    assert '"targets": [\n            "127.0.0.1:9464"\n          ]' in config
    assert str(Path("rules.yml").resolve()) in config


def test_wait_until_names_what_it_waited_for() -> None:
    def boom() -> bool:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(TimeoutError, match=r"waiting for the thing \(last error: ConnectionRefusedError"):
        wait_until(boom, timeout=0.05, interval=0.01, what="the thing")
    assert wait_until(lambda: 42, timeout=1) == 42


def test_managed_process_stops_and_dies_with_its_owner(tmp_path: Path) -> None:
    port = free_port()
    server = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    process = ManagedProcess(server, tmp_path / "server.log")
    wait_until(lambda: port_open(port), timeout=30, what="http.server")
    process.stop()
    process.stop()
    assert not process.running()
    with pytest.raises(RuntimeError, match=r"http.server exited with code -15"):
        process.check_running("http.server")

    # An owner that dies without stopping its server takes the server with it.
    owner = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pathlib import Path
        from tests.support import ManagedProcess, port_open, wait_until
        process = ManagedProcess({server!r}, Path({str(tmp_path / "orphan.log")!r}))
        wait_until(lambda: port_open({port}), timeout=30)
        print(process.pid, flush=True)
        os._exit(0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", owner], capture_output=True, text=True, timeout=60, check=True
    )
    orphan = int(done.stdout)
    wait_until(
        lambda: not Path(f"/proc/{orphan}").exists() or _zombie(orphan), timeout=10, what="the orphan to end"
    )


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
