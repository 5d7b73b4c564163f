"""Build-time network trust: the host's CA bundle and proxy settings.

On hosts behind an intercepting proxy only the host trusts the proxy's CA; a
fresh container root fails TLS. The factory lends the host's trust to build
containers while they build: the bundle is bind-mounted read-only and named by
the usual variables. It is never committed into a layer and never part of a
layer key (it changes how bytes travel, not which bytes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CANDIDATE_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",
)
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
# Where the bundle appears inside build containers. Under /tmp so that even the
# empty mount point the engine leaves behind is swept by DIB's finalise.
CONTAINER_DIR = "/tmp/factory-trust"
CONTAINER_BUNDLE = f"{CONTAINER_DIR}/ca.pem"


@dataclass(frozen=True)
class Trust:
    ca_bundle: Path | None
    proxies: dict[str, str]

    def env(self) -> dict[str, str]:
        """Variables that make pip, requests, curl, git and OpenSSL use the bundle."""
        env = dict(self.proxies)
        if self.ca_bundle:
            for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"):
                env[var] = CONTAINER_BUNDLE
        return env

    def mounts(self) -> list[tuple[str, str, str]]:
        """(host path, container path, "ro") binds for the bundle file."""
        if not self.ca_bundle:
            return []
        from factory.hostpaths import visible

        return [(str(visible(self.ca_bundle)), CONTAINER_BUNDLE, "ro")]


def host_trust(ca_bundle: str | None = None) -> Trust:
    chosen = ca_bundle or os.environ.get("FACTORY_CA_BUNDLE")
    if chosen:
        path = Path(chosen)
    else:
        path = next((Path(p) for p in CANDIDATE_BUNDLES if Path(p).is_file()), None)
    if path is not None:
        path = path.resolve()
        if not path.is_file():
            path = None
    proxies = {k: v for k, v in os.environ.items() if k in PROXY_VARS and v}
    return Trust(ca_bundle=path, proxies=proxies)
