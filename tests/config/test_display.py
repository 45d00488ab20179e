import pytest
import yaml

from kaiju.config.display import dump_yaml, is_secret_key, mask_secrets


@pytest.mark.parametrize(
    "name",
    ["password", "PASSWORD", "db_password", "dbpassword", "passwd", "secret", "client-secret", "token", "accessToken",
     "access_token", "key", "api_key", "apiKey", "private.key", "secret_key", "credentials"],
)
def test_secret_key_names(name):
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["keys", "monkey", "name", "url", "port", "tokens_count", "passage", 5, None])
def test_ordinary_key_names(name):
    assert not is_secret_key(name)


def test_mask_secrets_masks_values_and_keeps_the_rest():
    data = {
        "main": {"name": "demo"},
        "services": [
            {"cls": "RedisConnection", "settings": {"url": "redis://:pw@host:6379/0", "password": "pw", "token": None}}
        ],
        "etc": {"api_key": 123, "keys": ["a", "b"], "nested": {"secret": {"x": 1}}},
    }
    masked = mask_secrets(data)
    assert masked == {
        "main": {"name": "demo"},
        "services": [
            {
                "cls": "RedisConnection",
                "settings": {"url": "redis://:***@host:6379/0", "password": "***", "token": None},
            }
        ],
        "etc": {"api_key": "***", "keys": ["a", "b"], "nested": {"secret": "***"}},
    }
    assert data["services"][0]["settings"]["password"] == "pw"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@host", "redis://:***@host"),
        ("postgres://user:p4ss@db:5432/app", "postgres://user:***@db:5432/app"),
        ("http://user@host/x", "http://user@host/x"),
        ("http://host:8080/x", "http://host:8080/x"),
        ("http://h/x?a=1&token=abc&b=2", "http://h/x?a=1&token=***&b=2"),
        ("plain text", "plain text"),
    ],
)
def test_mask_passwords_in_urls(url, masked):
    assert mask_secrets({"url": url}) == {"url": masked}


def test_dump_yaml_keeps_order_and_round_trips():
    data = {"main": {"name": "demo", "env": "dev"}, "a": [1, {"b": None}], "ü": "ä"}
    text = dump_yaml(data)
    assert text.index("main") < text.index("a:")
    assert "ü: ä" in text
    assert yaml.safe_load(text) == data
