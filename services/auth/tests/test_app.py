"""`python -m auth` as a platform runs it: a real process that serves, health and all."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import grpc

from auth import keys
from auth.testing import CHEAP_ARGON2, PASSWORD, new_email
from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common.testing.services import ServiceProcess


async def test_process_serves_and_stops_cleanly(migrated_database: str, tmp_path: Path) -> None:
    """The service process starts on a migrated database with a generated development key
    (mode 0600 in AUTH_KEY_DIR), reports SERVING, registers and signs in a user whose token
    names that key, and exits 0 on SIGTERM."""
    key_dir = tmp_path / "keys"
    env = {
        "DATABASE_URL": migrated_database,
        "AUTH_KEY_DIR": str(key_dir),
        "METRICS_PORT": "-1",
        **CHEAP_ARGON2,
    }
    process = ServiceProcess("auth", env).start()
    try:
        key_file = key_dir / keys.DEV_KEY_FILE
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        async with grpc.aio.insecure_channel(process.target) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            email = new_email()
            await stub.Register(
                auth_pb2.RegisterRequest(email=email, password=PASSWORD, display_name="P")
            )
            login = await stub.Login(
                auth_pb2.LoginRequest(
                    password=auth_pb2.PasswordCredential(email=email, password=PASSWORD)
                )
            )
            me = await stub.GetCurrentUser(
                auth_pb2.GetCurrentUserRequest(),
                metadata=(("authorization", f"Bearer {login.tokens.access_token}"),),
            )
            assert me.user.email == email
            jwks = json.loads((await stub.GetJwks(auth_pb2.GetJwksRequest())).jwks_json)
        kid = keys.thumbprint(keys.development_key(key_dir).public_key())
        assert [k["kid"] for k in jwks["keys"]] == [kid]
        assert process.stop() == 0
    finally:
        process.close()
