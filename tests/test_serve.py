"""`formulary serve` as `make run` starts it: gunicorn workers on a fresh instance."""
import subprocess

import pytest

from .service_process import FORMULARY, admin_token, running_service, service_env


@pytest.mark.slow
def test_serve_creates_the_instance_prints_a_token_once_and_answers(tmp_path):
    env = service_env(tmp_path / "instance")
    with running_service(env) as service:
        token = admin_token(service.banner)
        assert f"Bearer {token}" in service.banner and "curl" in service.banner
        status, decision = service.call("POST", "/v1/decisions", token, {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}})
        assert status == 201 and decision["outcome"] == "off_label_with_evidence"
    assert (tmp_path / "instance" / "formulary.db").exists()
    assert (tmp_path / "instance" / "secret").stat().st_mode & 0o777 == 0o600
    with running_service(env) as again:
        assert "ivig_" not in again.banner                     # the token is printed only once
    listed = subprocess.run([str(FORMULARY), "tokens", "list"], env=env, capture_output=True, text=True).stdout
    assert listed.count("admin") == 2                          # one token, named admin with role admin
