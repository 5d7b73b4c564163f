"""Signatures over provenance statements with a key the user holds:
OpenSSH's `ssh-keygen -Y sign` / `-Y verify` (Ed25519 keys), so no crypto
library is added and the trusted keys are an ordinary allowed_signers file
(`PRINCIPAL ssh-ed25519 AAAA...` per line, as git uses for ssh signatures).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from factory.errors import FactoryError, UsageError, VerifyFailed

NAMESPACE = "factory-provenance"


class Untrusted(VerifyFailed):
    """A statement that is unsigned, or whose signature no allowed signer made."""


def _ssh_keygen() -> str:
    tool = shutil.which("ssh-keygen")
    if not tool:
        raise UsageError("signing needs ssh-keygen; install openssh-client")
    return tool


def check_signing_key(path: str | Path) -> Path:
    """An Ed25519 private key ssh-keygen can use without asking for a passphrase."""
    key = Path(path).expanduser()
    if not key.is_file():
        raise UsageError(f"--signing-key {path}: no such file; make one with `ssh-keygen -t ed25519 -N '' -f {path}`")
    out = subprocess.run([_ssh_keygen(), "-l", "-f", str(key)], capture_output=True, text=True)
    if out.returncode != 0:
        raise UsageError(f"--signing-key {path} is not an OpenSSH key ({(out.stderr or out.stdout).strip()[:120]})")
    if "(ED25519)" not in out.stdout:
        raise UsageError(f"--signing-key {path} is a {out.stdout.strip().rsplit(' ', 1)[-1]} key; use an Ed25519 one (ssh-keygen -t ed25519)")
    return key.resolve()


def check_allowed_signers(path: str | Path) -> Path:
    """An allowed_signers file naming at least one key."""
    signers = Path(path).expanduser()
    if not signers.is_file():
        raise UsageError(f"--require-signed {path}: no such file; list trusted keys as `NAME ssh-ed25519 AAAA...` lines")
    lines = [l for l in signers.read_text(errors="replace").splitlines() if l.strip() and not l.lstrip().startswith("#")]
    if not lines:
        raise UsageError(f"--require-signed {path} lists no key; add `NAME ssh-ed25519 AAAA...` lines")
    return signers.resolve()


def sign(data: bytes, key: Path) -> bytes:
    """An SSH signature (armored text) of the data."""
    with tempfile.TemporaryDirectory() as tmp:
        message = Path(tmp) / "statement"
        message.write_bytes(data)
        out = subprocess.run([_ssh_keygen(), "-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE, str(message)],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise FactoryError(f"signing with {key} failed: {out.stderr.strip()[:200]} (a key with a passphrase needs ssh-agent)")
        return message.with_name("statement.sig").read_bytes()


def verify(data: bytes, signature: bytes | None, allowed_signers: Path) -> str:
    """The principal of the allowed signer who signed the data, or Untrusted."""
    if not signature:
        raise Untrusted("it carries no signature")
    with tempfile.TemporaryDirectory() as tmp:
        sig = Path(tmp) / "statement.sig"
        sig.write_bytes(signature)
        found = subprocess.run([_ssh_keygen(), "-Y", "find-principals", "-s", str(sig), "-f", str(allowed_signers)],
                               capture_output=True, text=True)
        principals = found.stdout.split()
        if found.returncode != 0 or not principals:
            raise Untrusted(f"its signature is by a key not in {allowed_signers.name}")
        for principal in principals:
            checked = subprocess.run([_ssh_keygen(), "-Y", "verify", "-f", str(allowed_signers), "-I", principal,
                                      "-n", NAMESPACE, "-s", str(sig)], input=data, capture_output=True)
            if checked.returncode == 0:
                return principal
    raise Untrusted(f"its signature does not match its statement (signer listed in {allowed_signers.name})")
