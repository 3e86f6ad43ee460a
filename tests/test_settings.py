"""Settings: documented, parsed from environment and TOML, and refused with one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime.settings import SettingsError, load_settings, setting_fields


def test_every_setting_is_in_the_readme_table(project_root: Path) -> None:
    readme = (project_root / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    declared = {f.metadata["env"] for f in setting_fields()}
    assert declared - documented == set(), "settings missing from the README table"
    assert documented - declared == set(), "README documents settings that do not exist"


def test_every_setting_has_help() -> None:
    assert all(f.metadata["help"].strip() for f in setting_fields())


def test_defaults_match_the_contract() -> None:
    settings = load_settings({})
    assert (settings.host, settings.port, settings.language) == ("127.0.0.1", 8080, "pt-BR")
    assert settings.timezone == "America/Sao_Paulo"
    assert settings.litellm_base_url == "http://127.0.0.1:4000"
    assert settings.embedded_postgres and settings.embedded_redis


def test_environment_beats_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "solaris.toml"
    config.write_text('port = 9000\nlanguage = "en"\nauto_provision = false\n', encoding="utf-8")
    settings = load_settings({"SOLARIS_CONFIG": str(config), "SOLARIS_PORT": "9100"})
    assert settings.port == 9100
    assert settings.language == "en"
    assert settings.auto_provision is False


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"SOLARIS_PORT": "eighty"}, "SOLARIS_PORT"),
        ({"SOLARIS_LANGUAGE": "fr"}, "SOLARIS_LANGUAGE"),
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://db:port/x"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://cache"}, "REDIS_URL"),
        ({"SOLARIS_TIMEZONE": "Mars/Olympus"}, "SOLARIS_TIMEZONE"),
        ({"SOLARIS_REDIS_FAILURE": "maybe"}, "SOLARIS_REDIS_FAILURE"),
    ],
)
def test_bad_values_name_the_setting(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    assert str(caught.value).startswith(named + ":")
    assert "\n" not in str(caught.value)


def test_unknown_key_in_the_toml_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "solaris.toml"
    config.write_text("prot = 1\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings({"SOLARIS_CONFIG": str(config)})


def test_the_example_config_loads_with_its_optional_lines_uncommented(project_root: Path, tmp_path: Path) -> None:
    text = (project_root / "config" / "solaris.example.toml").read_text(encoding="utf-8")
    uncommented = re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", text)
    assert uncommented != text
    config = tmp_path / "solaris.toml"
    config.write_text(uncommented, encoding="utf-8")
    settings = load_settings({"SOLARIS_CONFIG": str(config)})
    assert settings.cookie_secure is True
    assert settings.trusted_proxies  # a top-level key, not swallowed by a [table] above it
    assert dict(settings.model_encodings) == {"claude": "cl100k_base", "llama": "o200k_base"}
