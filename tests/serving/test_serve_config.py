"""attnapps.serve's key=value settings: parsed, typed, rejected by name; --help lists them."""

import pytest

from attnapps.errors import ConfigError
from attnapps.serve.config import help_text, parse


def test_settings_are_parsed_and_checked_by_name():
    cfg = parse(["run=a", "run=b", "port=9000", "batching=lock"])
    assert cfg.run == ["a", "b"] and cfg.port == 9000 and cfg.host == "127.0.0.1"
    for argv, words in [(["run=a", "prot=1"], "unknown key 'prot'"), ([], "missing run="),
                        (["run=a", "port=x"], "port='x'"), (["run=a", "batching=queue"], "auto, batch or lock"),
                        (["run=a", "port=0"], "port=0 must be >= 1"),
                        (["run=a", "timeout_s=0"], "timeout_s=0.0 must be > 0")]:
        with pytest.raises(ConfigError, match=words):
            parse(argv)


def test_help_lists_every_setting():
    text = help_text()
    for key in ("run", "host", "port", "batching", "max_body_mb", "max_tokens", "max_image_pixels"):
        assert f"  {key} " in text
    assert "0.0.0.0 exposes" in text
