"""The signing key ring: keys from config, the development key, and rotation without
downtime (a token signed by the old key verifies until that key leaves the config)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from auth import keys
from auth.testing import (
    AuthServer,
    bearer,
    make_config,
    pem,
    public_pem,
    start_server,
    stop_server,
)
from kiln.auth.v1 import auth_pb2
from kiln.common.config import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_keys_from_files_and_secret(tmp_path: Path) -> None:
    """Keys come from PEM files and the PEM secret (a literal \\n counts as a line break);
    every key verifies, the first private key signs, kids are RFC 7638 thumbprints."""
    first, second, retired = (ed25519.Ed25519PrivateKey.generate() for _ in range(3))
    both = write(tmp_path / "keys.pem", pem(first) + public_pem(retired))
    secret = pem(second).replace("\n", "\\n")
    cfg = make_config(
        "postgresql://x/y", AUTH_SIGNING_KEY_FILES=str(both), AUTH_SIGNING_KEYS=secret
    )
    ring = keys.load_key_ring(cfg)
    kids = [keys.thumbprint(k.public_key()) for k in (first, retired, second)]
    assert list(ring.public_keys) == kids
    assert ring.signing_kid == kids[0]
    assert len(kids[0]) == 43
    chosen = keys.load_key_ring(
        make_config(
            "postgresql://x/y",
            AUTH_SIGNING_KEY_FILES=str(both),
            AUTH_SIGNING_KEYS=secret,
            AUTH_SIGNING_KEY_ID=kids[2],
        )
    )
    assert chosen.signing_kid == kids[2]
    assert chosen.jwks()["keys"][0]["kid"] == kids[2]


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"AUTH_SIGNING_KEYS": "not a pem"}, "AUTH_SIGNING_KEYS"),
        ({"AUTH_SIGNING_KEYS": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"},
         "AUTH_SIGNING_KEYS"),
        ({"AUTH_SIGNING_KEYS": "{ec}"}, "AUTH_SIGNING_KEYS"),
        ({"AUTH_SIGNING_KEYS": "{public}"}, "AUTH_SIGNING_KEY_FILES"),
        ({"AUTH_SIGNING_KEY_ID": "nope"}, "AUTH_SIGNING_KEY_ID"),
        ({"AUTH_SIGNING_KEYS": "", "AUTH_SIGNING_KEY_FILES": "/no/such/file.pem"},
         "AUTH_SIGNING_KEY_FILES"),
        ({"AUTH_SIGNING_KEYS": "", "AUTH_GENERATE_KEY": "false"}, "AUTH_SIGNING_KEY_FILES"),
    ],
)  # fmt: skip
def test_bad_key_config_names_the_variable(variables: dict[str, str], named: str) -> None:
    """Unreadable, non-Ed25519 or public-only keys, an unknown signing kid, a missing file,
    no key with generation off: ConfigError naming the variable to fix."""
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    replacements = {
        "{ec}": ec_key.decode(),
        "{public}": public_pem(ed25519.Ed25519PrivateKey.generate()),
    }
    variables = {k: replacements.get(v, v) for k, v in variables.items()}
    with pytest.raises(ConfigError) as caught:
        keys.load_key_ring(make_config("postgresql://x/y", **variables))
    assert caught.value.variable == named


def test_development_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    """With no key configured, a key is generated in AUTH_KEY_DIR (file mode 0600) on the
    first start and the same key is used on the next."""
    key_dir = tmp_path / "data" / "auth-keys"
    cfg = make_config(
        "postgresql://x/y",
        AUTH_SIGNING_KEYS="",
        AUTH_GENERATE_KEY="true",
        AUTH_KEY_DIR=str(key_dir),
    )
    first = keys.load_key_ring(cfg)
    key_file = key_dir / keys.DEV_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert keys.load_key_ring(cfg).signing_kid == first.signing_kid
    assert [p.name for p in key_dir.iterdir()] == [keys.DEV_KEY_FILE]


async def who(server: AuthServer, token: str) -> grpc.StatusCode:
    """The code GetCurrentUser gives for `token`."""
    try:
        await server.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(token))
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_key_rotation_without_downtime(auth_database: str) -> None:
    """Rotation by restarts: (1) old key signs; (2) new key signs, old still listed: tokens
    of both verify and GetJwks lists both; (3) old key kept as public only: still verifies;
    (4) old key removed: its tokens are UNAUTHENTICATED, new ones still work."""
    old, new = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    old_kid, new_kid = keys.thumbprint(old.public_key()), keys.thumbprint(new.public_key())

    async def run(keys_pem: str, signing: str = "") -> AuthServer:
        return await start_server(
            make_config(auth_database, AUTH_SIGNING_KEYS=keys_pem, AUTH_SIGNING_KEY_ID=signing)
        )

    server = await run(pem(old))
    try:
        account = await server.account()
        old_token = account.tokens.access_token
        assert jwt.get_unverified_header(old_token)["kid"] == old_kid
    finally:
        await stop_server(server)

    server = await run(pem(old) + pem(new), signing=new_kid)
    try:
        new_token = (await server.login(account.email)).tokens.access_token
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        assert await who(server, old_token) == grpc.StatusCode.OK
        assert await who(server, new_token) == grpc.StatusCode.OK
        listed = json.loads((await server.stub.GetJwks(auth_pb2.GetJwksRequest())).jwks_json)
        assert [k["kid"] for k in listed["keys"]] == [new_kid, old_kid]
    finally:
        await stop_server(server)

    server = await run(pem(new) + public_pem(old))
    try:
        assert await who(server, old_token) == grpc.StatusCode.OK
    finally:
        await stop_server(server)

    server = await run(pem(new))
    try:
        assert await who(server, old_token) == grpc.StatusCode.UNAUTHENTICATED
        assert await who(server, new_token) == grpc.StatusCode.OK
    finally:
        await stop_server(server)


def test_service_refuses_to_start_with_a_bad_key(tmp_path: Path) -> None:
    """`python -m auth` with an unusable key exits 2, names the variable, and prints no
    traceback and no key material."""
    env = {
        "PATH": "",
        "DATABASE_URL": "postgresql://127.0.0.1:1/none",
        "AUTH_SIGNING_KEYS": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----",
    }
    result = subprocess.run(
        [sys.executable, "-m", "auth"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "AUTH_SIGNING_KEYS" in result.stderr
    assert "Traceback" not in result.stderr
    assert "c2VjcmV0" not in result.stderr + result.stdout
