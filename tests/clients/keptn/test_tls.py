"""TLS towards the control plane: HTTP_SSL_VERIFY and HTTP_SSL_CA_BUNDLE against a real HTTPS server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from jes import errors, settings
from jes.clients.keptn import auth
from jes.clients.keptn import client as keptn_client
from jes.devtools.controlplane.server import LocalControlPlane


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[LocalControlPlane, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    with LocalControlPlane(token="tls-token", ssl_certfile=cert_file, ssl_keyfile=key_file) as plane:
        yield plane, ca_file


async def metadata(current: settings.Settings) -> dict[str, object]:
    async with auth.make_http_client(current) as http:
        return await keptn_client.KeptnClient.from_settings(http, current).check()


def configured(plane: LocalControlPlane, **values: object) -> settings.Settings:
    return settings.Settings(keptn_api_endpoint=plane.url, keptn_api_token="tls-token", **values)  # type: ignore[arg-type]


async def test_a_ca_bundle_makes_a_private_ca_trusted(tls: tuple[LocalControlPlane, Path]) -> None:
    plane, ca_file = tls
    assert plane.url.startswith("https://")
    result = await metadata(configured(plane, http_ssl_ca_bundle=str(ca_file)))
    assert result["authenticated"] is True


async def test_verification_is_on_by_default_and_fails_clearly(tls: tuple[LocalControlPlane, Path]) -> None:
    plane, _ = tls
    with pytest.raises(errors.KeptnError) as caught:
        await metadata(configured(plane))
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value) or "certificate verify failed" in str(caught.value)
    assert "tls-token" not in str(caught.value)


async def test_verification_can_be_switched_off(tls: tuple[LocalControlPlane, Path]) -> None:
    plane, _ = tls
    result = await metadata(configured(plane, http_ssl_verify=False))
    assert result["authenticated"] is True


def test_an_unreadable_ca_bundle_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(errors.SettingsError, match="HTTP_SSL_CA_BUNDLE: cannot load"):
        auth.ssl_verify(settings.Settings(http_ssl_ca_bundle=str(tmp_path / "missing.pem")))
