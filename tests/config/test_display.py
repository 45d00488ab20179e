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


@pytest.mark.parametrize(
    "name",
    ["secrets", "tokens", "api_keys", "apiKeys", "passwords", "auth_tokens", "auth", "jwt", "jwt_secret", "credential",
     "passphrase", "cookie", "Cookie", "Set-Cookie", "authorization", "Authorization", "Proxy-Authorization",
     "password_hash", "private_keys", "pass", "smtp_pass", "hmac", "otp_seed", "salt", "totp", "pin", "pem"],
)
def test_more_secret_key_names(name):
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["tokens_count", "keys", "sessions", "author", "hash"])
def test_more_ordinary_key_names(name):
    assert not is_secret_key(name)


def test_auth_settings_and_headers_are_masked():
    data = {
        "services": [
            {"cls": "AuthService", "settings": {"secret": "s" * 40, "private_key": "-----BEGIN", "access_ttl": 900}},
            {"cls": "ConfigUsers", "settings": {"users": {"alice": {"password_hash": "$argon2id$v=19$m=1,t=1,p=1$a$b", "scope": "user"}}}},
            {"cls": "HTTPServer", "settings": {"session_cookie": True, "port": 80}},
            {"cls": "HTTPRPCClient", "settings": {"headers": {"Authorization": "Bearer abc", "Cookie": "sid=1",
                                                              "Proxy-Authorization": "Basic eDp5", "Accept": "json"}}},
        ],
        "etc": {
            "api_keys": ["k1", "k2"], "tokens": {"a": "t"}, "secrets": "x", "passwords": ["p"],
            "hook": "https://ghp_0123456789abcdefghijkl@github.com/x", "signed": "https://s3/x?X-Amz-Signature=abc&sig=def&page=2",
            "header": ["Authorization", "Bearer abc"], "value": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig",
            "about": "Basic information",
        },
    }
    masked = mask_secrets(data)
    settings = [s["settings"] for s in masked["services"]]
    assert settings[0] == {"secret": "***", "private_key": "***", "access_ttl": 900}
    assert settings[1]["users"]["alice"] == {"password_hash": "***", "scope": "user"}
    assert settings[2] == {"session_cookie": True, "port": 80}  # a flag is no credential
    assert settings[3]["headers"] == {"Authorization": "***", "Cookie": "***", "Proxy-Authorization": "***", "Accept": "json"}
    etc = masked["etc"]
    assert etc["api_keys"] == etc["tokens"] == etc["secrets"] == etc["passwords"] == "***"
    assert etc["hook"] == "https://***@github.com/x"
    assert etc["signed"] == "https://s3/x?X-Amz-Signature=***&sig=***&page=2"
    assert etc["header"] == ["Authorization", "***"] and etc["value"] == "***"
    assert etc["about"] == "Basic information"
    text = dump_yaml(masked)
    for secret in ("abc", "eDp5", "sid=1", "argon2", "ghp_", "k1", "def"):
        assert secret not in text


def test_pem_blocks_are_masked_under_any_name_and_in_text():
    from kaiju.masking import mask_text

    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    masked = mask_secrets({"signing": pem, "cert_chain": ["-----BEGIN RSA PRIVATE KEY-----\nabc"], "name": "app"})
    assert masked == {"signing": "***\n", "cert_chain": ["***"], "name": "app"}
    text = mask_text(f"loaded {pem} from disk; dsn postgres://app:s3cr3t@db/x")
    assert "MIIE" not in text and "s3cr3t" not in text and text.startswith("loaded ***\n from disk") and "app:***@db" in text
