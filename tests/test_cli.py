"""The console script, run as a user would: token, migrate, and serve answering /healthz."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt

from tests.fixtures.services import free_port

CLI = [sys.executable, "-m", "server"]


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "S3_", "AUTH_", "SERVER_"))
    }


def test_token_prints_a_verifiable_jwt(tmp_path: Path) -> None:
    env = {**clean_env(), "AUTH_JWT_SECRET": "s" * 40}
    result = subprocess.run(
        [
            *CLI,
            "token",
            "--user",
            "ada",
            "--org",
            "acme",
            "--role",
            "viewer",
            "--ttl",
            "120",
            "--name",
            "Ada",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), "s" * 40, algorithms=["HS256"])
    assert claims["sub"] == "ada" and claims["org"] == "acme" and claims["role"] == "viewer"
    assert claims["name"] == "Ada"
    assert 100 <= claims["exp"] - time.time() <= 121


def test_token_refuses_bad_ids(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "token", "--user", "a b", "--org", "acme"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "user" in result.stderr


def test_migrate_is_idempotent_on_the_embedded_default(tmp_path: Path) -> None:
    for _ in range(2):
        result = subprocess.run(
            [*CLI, "migrate"],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "bpmn-collab.db").is_file()


def test_bad_configuration_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    env = {**clean_env(), "SERVER_WORKERS": "3"}
    result = subprocess.run(
        [*CLI, "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "REDIS_URL" in result.stderr


def idle_connection_closed_within(port: int, *, seconds: float) -> bool:
    """Whether the server closes a kept-alive connection, idle after one answer, in time."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            answer += connection.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        try:
            return connection.recv(4096) == b""
        except TimeoutError:
            return False


def test_serve_starts_on_the_embedded_default_and_shares_the_token_secret(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**clean_env(), "SERVER_KEEP_ALIVE_S": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "server did not start within 30 s"
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        token = run_cli(
            "token", "--user", "ada", "--org", "acme", cwd=tmp_path, env=clean_env()
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"http://127.0.0.1:{port}/api/diagrams", json={"title": "CLI"}, headers=headers
        )
        assert created.status_code == 201, created.text
        assert (tmp_path / "data" / "bpmn-collab.db").is_file()
        assert idle_connection_closed_within(port, seconds=4)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        finally:
            if process.stdout:
                process.stdout.close()
    assert process.returncode == 0


def test_check_reports_round_trips_and_refusals(tmp_path: Path) -> None:
    from tests.samples import MIWG, REFERENCE

    good = REFERENCE / "C.1.0.bpmn"
    result = run_cli("check", str(good), cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "C.1.0.bpmn" in result.stdout

    broken = MIWG / "genmymodel-0.47" / "C.1.0-export.bpmn"  # Latin-1 bytes declared UTF-8
    refused = run_cli("check", str(good), str(broken), cwd=tmp_path, env=clean_env())
    assert refused.returncode == 1
    assert "C.1.0-export.bpmn" in refused.stdout
