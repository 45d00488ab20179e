"""`kaiju-run check` of a config with `Telemetry`: the missing packages, a bad endpoint."""

from __future__ import annotations

from pathlib import Path

from tests.runtime.test_cli import ROOT, run


def config(tmp_path: Path, settings: str = "{}") -> Path:
    path = tmp_path / "app.yml"
    path.write_text(f"main: {{name: t}}\nservices:\n  - cls: RPCServer\n  - cls: Telemetry\n    settings: {settings}\n")
    return path


def without_the_sdk(tmp_path: Path) -> dict[str, str]:
    """An environment where `opentelemetry.sdk` does not import, as on a host without the otel extra."""
    fake = tmp_path / "site" / "opentelemetry" / "sdk"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text('raise ImportError("not installed", name="opentelemetry.sdk")\n')
    return {"PYTHONPATH": f"{tmp_path / 'site'}:{ROOT}"}


def test_check_says_which_extra_to_install_when_the_sdk_is_missing(tmp_path: Path) -> None:
    path = config(tmp_path)
    for command in ("check", "run"):
        proc = run("-c", str(path), "--log-format", "plain", command, env=without_the_sdk(tmp_path))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            f'kaiju-run: {path}: services[Telemetry].settings: Telemetry: exporter "otlp" needs the OpenTelemetry SDK and '
            'exporter, and opentelemetry.sdk does not import: pip install "kaiju-runner[otel]"'
        )
        assert "Traceback" not in proc.stderr


def test_without_the_service_nothing_of_the_sdk_is_needed(tmp_path: Path) -> None:
    path = tmp_path / "app.yml"
    path.write_text("main: {name: t}\nservices:\n  - cls: RPCServer\n")
    proc = run("-c", str(path), "check", env=without_the_sdk(tmp_path))
    assert proc.returncode == 0, proc.stderr


def test_check_refuses_an_endpoint_that_is_no_http_url(tmp_path: Path) -> None:
    path = config(tmp_path, '{endpoint: "collector:4318"}')
    proc = run("-c", str(path), "check")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"kaiju-run: {path}: services[Telemetry].settings.endpoint: expected an http:// or https:// URL, "
        "got 'collector:4318'"
    )


def test_check_refuses_an_endpoint_from_the_environment_that_is_no_http_url(tmp_path: Path) -> None:
    path = config(tmp_path)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        proc = run("-c", str(path), "check", env={name: "collector:4318"})
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            f"kaiju-run: {path}: services[Telemetry].settings.endpoint: expected an http:// or https:// URL, "
            f"got 'collector:4318' (from {name})"
        )
    assert run("-c", str(path), "check", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}).returncode == 0
