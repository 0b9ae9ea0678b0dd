"""The config file: TOML or YAML with one schema, ``${ENV}`` references, unknown keys refused
(naming the file and the key), through the real ``load_settings``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpexec.errors import ConfigError
from mcpexec.settings import load_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MCPEXEC_CONFIG", raising=False)
    monkeypatch.setenv("MCPEXEC_HOME", str(tmp_path))
    return tmp_path


def test_yaml_and_toml_give_the_same_settings(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASS_FOR_TEST", "s3cret")
    (home / "config.yaml").write_text(
        "port: 9100\nworkers: 3\n"
        "database_url: postgresql://app:${PGPASS_FOR_TEST}@db/mcpexec\n"
        "secrets:\n  API_TOKEN: ${PGPASS_FOR_TEST}\n"
        "public_url: ${UNSET_FOR_TEST:-https://exec.example.com}\n"
    )
    from_yaml = load_settings(home=home)  # only config.yaml there: it is the config file
    (home / "config.yaml").unlink()
    (home / "config.toml").write_text(
        "port = 9100\nworkers = 3\n"
        'database_url = "postgresql://app:${PGPASS_FOR_TEST}@db/mcpexec"\n'
        'public_url = "${UNSET_FOR_TEST:-https://exec.example.com}"\n'
        '[secrets]\nAPI_TOKEN = "${PGPASS_FOR_TEST}"\n'
    )
    from_toml = load_settings(home=home)
    for s in (from_yaml, from_toml):
        assert (s.port, s.workers) == (9100, 3)
        assert s.database_url == "postgresql://app:s3cret@db/mcpexec"
        assert s.secrets == {"API_TOKEN": "s3cret"}
        assert s.public_url == "https://exec.example.com"


def test_environment_beats_the_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config.yaml").write_text("port: 9100\n")
    monkeypatch.setenv("MCPEXEC_PORT", "9200")
    assert load_settings(home=home).port == 9200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prot: 9100\n", "unknown key 'prot'; did you mean 'port'?"),
        ("port: [1\n", "is not valid YAML"),
        ("- a list\n", "the top level must be a mapping"),
        ("token: ${NOT_SET_ANYWHERE}\n", "key 'token' names ${NOT_SET_ANYWHERE}, which is not set"),
        ("port: lots\n", "port in"),
    ],
)
def test_a_bad_file_names_itself_and_the_key(home: Path, text: str, expected: str) -> None:
    (home / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_settings(home=home)
    assert expected in refused.value.message
    assert "config.yaml" in refused.value.message


def test_dollar_dollar_is_a_literal_dollar(home: Path) -> None:
    (home / "config.toml").write_text('public_url = "https://x.example/$${not_a_var}"\n')
    assert load_settings(home=home).public_url == "https://x.example/${not_a_var}"


def test_the_readme_config_example_loads(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"```yaml\n(# \$MCPEXEC_HOME/config\.yaml\n.*?)```", readme, re.DOTALL)
    assert block is not None
    (home / "config.yaml").write_text(block.group(1))
    monkeypatch.setenv("PGPASSWORD", "pw")
    monkeypatch.setenv("API_TOKEN", "tok")
    settings = load_settings(home=home)
    assert settings.database_url == "postgresql://mcpexec:pw@db.internal/mcpexec"
    assert settings.secrets == {"API_TOKEN": "tok"}
