"""The pipeline's credentials: read from the 0600 file the secure broker writes, env overrides,
never printed (streams/config.py, streams/kafka/security.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from threatroute.errors import ConfigError
from threatroute.streams.config import load_config, read_properties
from threatroute.streams.kafka import security

PASSWORD = security.new_password()


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("THREATROUTE_BOOTSTRAP", "THREATROUTE_CREDENTIALS", "THREATROUTE_SASL_USERNAME",
                 "THREATROUTE_SASL_PASSWORD", "THREATROUTE_SASL_PASSWORD_FILE",
                 "THREATROUTE_SECURITY_PROTOCOL", "THREATROUTE_SSL_CA",
                 "THREATROUTE_BROKER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("THREATROUTE_STATE", str(tmp_path))
    security.write_private(tmp_path / "credentials" / "pipeline.properties",
                           security.client_properties("127.0.0.1:19999", security.PIPELINE_USER,
                                                      PASSWORD, tmp_path / "ca.pem",
                                                      comment="test"))
    return tmp_path


def test_the_credentials_file_is_found_without_flags(state: Path) -> None:
    config = load_config()
    assert config.secure
    assert config.bootstrap == "127.0.0.1:19999"
    settings = config.kafka_settings()
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert settings["sasl.username"] == security.PIPELINE_USER
    assert settings["sasl.password"] == PASSWORD
    assert settings["ssl.ca.location"] == str(state / "ca.pem")


def test_the_password_never_prints(state: Path) -> None:
    config = load_config()
    assert PASSWORD not in repr(config) and PASSWORD not in str(config)
    assert PASSWORD not in f"{config.sasl_password}"


def test_environment_overrides(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = state / "pw"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("THREATROUTE_SASL_USERNAME", "someone")
    monkeypatch.setenv("THREATROUTE_SASL_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("THREATROUTE_BOOTSTRAP", "127.0.0.1:1")
    config = load_config()
    assert (config.sasl_username, config.sasl_password.value, config.bootstrap) == \
        ("someone", "from-a-file", "127.0.0.1:1")


def test_plaintext_without_a_credentials_file(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREATROUTE_STATE", str(tmp_path))
    for name in ("THREATROUTE_CREDENTIALS", "THREATROUTE_SASL_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    config = load_config()
    assert not config.secure
    assert "sasl.password" not in config.kafka_settings()


def test_a_named_credentials_file_must_exist(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREATROUTE_CREDENTIALS", str(tmp_path / "missing.properties"))
    with pytest.raises(ConfigError):
        load_config()


def test_private_files_are_0600_even_when_they_existed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    path.chmod(0o644)
    security.write_private(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "new"


def test_client_properties_are_what_librdkafka_reads(tmp_path: Path) -> None:
    path = security.write_private(tmp_path / "a.properties", security.client_properties(
        "127.0.0.1:9092", "examplehost", PASSWORD, tmp_path / "ca.pem", comment="two\nlines"))
    assert read_properties(path) == {
        "bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "examplehost",
        "sasl.password": PASSWORD, "ssl.ca.location": str(tmp_path / "ca.pem")}


def test_recipient_grants_are_exactly_the_four() -> None:
    grants = {(g.resource, g.name, g.pattern, g.operation)
              for g in security.recipient_grants("examplehost")}
    assert grants == {("topic", "alerts.examplehost", "literal", "read"),
                      ("group", "examplehost.", "prefixed", "read"),
                      ("topic", "feedback.examplehost", "literal", "write"),
                      ("topic", "contributions.examplehost", "literal", "write")}


def test_internal_principals_can_never_be_recipient_ids() -> None:
    from threatroute.registry import ID_PATTERN

    for user in (security.PIPELINE_USER, security.BROKER_USER, security.CONTROLLER_USER):
        assert not ID_PATTERN.fullmatch(user)


def test_the_local_ca_signs_a_broker_certificate_for_loopback(tmp_path: Path) -> None:
    from cryptography import x509

    files = security.ensure_tls(tmp_path / "tls")
    assert stat.S_IMODE(files.broker.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(files.broker.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    before = files.broker.read_bytes()
    assert security.ensure_tls(tmp_path / "tls").broker.read_bytes() == before  # kept
