"""Configuration order, and an import that opens nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from governance.config import load_config


def test_defaults_then_environment_then_mapping(monkeypatch, tmp_path):
    monkeypatch.delenv("GOVERNANCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path / "from-env"))
    settings = load_config()
    assert settings["GOVERNANCE_HOME"] == str(tmp_path / "from-env")
    assert settings["GOVERNANCE_DATABASE_URL"] == f"sqlite:///{tmp_path / 'from-env'}/governance.db"

    settings = load_config({"GOVERNANCE_HOME": str(tmp_path / "given")})
    assert settings["GOVERNANCE_HOME"] == str(tmp_path / "given")

    monkeypatch.setenv("GOVERNANCE_DATABASE_URL", "postgresql://u@h/db")
    assert load_config()["GOVERNANCE_DATABASE_URL"] == "postgresql+psycopg://u@h/db"


def test_default_home_is_instance_under_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("GOVERNANCE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_config()["GOVERNANCE_HOME"] == str(tmp_path / "instance")


def test_import_and_create_app_open_nothing(tmp_path):
    home = tmp_path / "untouched"
    code = (
        "import sys, governance, governance.app, governance.cli\n"
        f"app = governance.app.create_app({{'GOVERNANCE_HOME': {str(home)!r}}})\n"
        "assert 'torch' not in sys.modules, 'web process imported torch'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    assert not Path(home).exists(), "create_app() must not create or open the instance"


def test_a_setting_merged_into_another_is_refused_by_its_old_name(monkeypatch, tmp_path):
    """TRAINING_EXECUTOR became JOBS_EXECUTOR (one executor for every kind of job),
    GOVERNANCE_CELERY_BROKER became CELERY_BROKER_URL, and GUARD_* became GUARDRAILS_*: a
    deployment that still sets an old name is told which to set instead, never run silently
    with the default."""
    monkeypatch.setenv("GOVERNANCE_HOME", str(tmp_path))
    for old, new in (
        ("TRAINING_EXECUTOR", "JOBS_EXECUTOR"),
        ("GOVERNANCE_CELERY_BROKER", "CELERY_BROKER_URL"),
        ("GUARD_URL", "GUARDRAILS_URL"),
        ("GUARD_API_KEY", "GUARDRAILS_API_KEY"),
    ):
        monkeypatch.setenv(old, "celery")
        with pytest.raises(ValueError, match=f"{old} is no longer read; set {new}"):
            load_config()
        monkeypatch.delenv(old)
    assert load_config()["JOBS_EXECUTOR"] == "local"
