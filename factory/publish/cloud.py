"""An OpenStack connection (Glance, Swift) the ecosystem's way: a clouds.yaml
entry (`--os-cloud`, OS_CLOUD) or the OS_* variables."""

from __future__ import annotations

from factory import log
from factory.errors import FactoryError


def errors() -> tuple[type[Exception], ...]:
    """What openstacksdk, keystoneauth and requests (under both) raise when a
    cloud fails a request."""
    import keystoneauth1.exceptions
    import openstack.exceptions
    import requests

    return openstack.exceptions.SDKException, keystoneauth1.exceptions.ClientException, requests.RequestException


def connect(cloud: str | None):
    import openstack

    try:
        conn = openstack.connect(cloud=cloud) if cloud else openstack.connect()
    except errors() as e:
        raise FactoryError(log.scrub(f"no usable OpenStack cloud configuration ({e}); name a clouds.yaml entry with "
                                     "--os-cloud or OS_CLOUD, or set the OS_* variables")) from e
    auth = conn.config.config.get("auth") or {}
    log.hide(*(str(v) for k, v in auth.items() if any(s in k for s in ("password", "secret", "token"))))
    return conn
