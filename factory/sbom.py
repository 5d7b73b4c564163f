"""Software bills of materials: CycloneDX 1.5 JSON, made by the
cyclonedx-python-lib library (and checked by its own schema validator).

What a tree holds is read from it by INVENTORY, a shell script run in the
tree: the package database (dpkg, or rpm) and the Python distributions
installed outside it with pip (the guest agent's virtualenv). A layer's
SBOM lists what that layer added or changed relative to its parent (a
package the layer removed is not listed); an image's lists all of it.
A BOM's serial number and timestamp come from its subject and the build's
SOURCE_DATE_EPOCH, so the same tree gives the same document.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

FORMAT = "CycloneDX 1.5"

# One line per package, tab-separated; `os` first. Packages the package
# manager only remembers (removed, config files left) are not installed.
INVENTORY = r"""
. /etc/os-release 2>/dev/null || true
printf 'os\t%s\t%s\n' "${ID:-unknown}" "${VERSION_ID:-}"
if command -v dpkg-query >/dev/null 2>&1; then
    dpkg-query -W -f '${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\t${source:Package}\t${Maintainer}\n' \
        | sed -n 's/^installed\t/deb\t/p'
elif command -v rpm >/dev/null 2>&1; then
    rpm -qa --qf 'rpm\t%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\t%{VENDOR}\n'
fi
find /opt /usr/local /srv -xdev -type d -name '*.dist-info' 2>/dev/null | sort | while read -r d; do
    [ -f "$d/METADATA" ] || continue
    name=$(sed -n 's/^Name: *//p' "$d/METADATA" | head -n1)
    version=$(sed -n 's/^Version: *//p' "$d/METADATA" | head -n1)
    printf 'pip\t%s\t%s\t%s\n' "$name" "$version" "$d"
done
"""


@dataclass(frozen=True)
class Package:
    kind: str  # deb, rpm or pip
    name: str
    version: str
    arch: str = ""  # deb/rpm
    source: str = ""  # the source package (deb/rpm)
    supplier: str = ""  # maintainer or vendor
    location: str = ""  # pip: the dist-info folder (which virtualenv)

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What a package is, apart from its version: a pip distribution is
        one per folder it is installed in."""
        return (self.kind, self.name.lower(), self.arch, self.location.rsplit("/", 1)[0])


@dataclass(frozen=True)
class Inventory:
    os_id: str
    os_version: str
    packages: tuple[Package, ...]


def parse(text: str) -> Inventory:
    """INVENTORY's output -> what it names (pure)."""
    os_id, os_version, packages = "unknown", "", []
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0] == "os" and len(fields) >= 3:
            os_id, os_version = fields[1], fields[2]
        elif fields[0] in ("deb", "rpm") and len(fields) >= 6:
            kind, name, version, arch, source, supplier = fields[:6]
            packages.append(Package(kind, name, version, arch, source or name, supplier))
        elif fields[0] == "pip" and len(fields) >= 4 and fields[1]:
            packages.append(Package("pip", fields[1], fields[2], location=fields[3]))
    return Inventory(os_id, os_version, tuple(sorted(packages, key=lambda p: (p.kind, p.name.lower(), p.arch, p.location))))


def added(tree: Inventory, parent: Inventory | None) -> Inventory:
    """The packages a layer added or changed: absent from its parent, or
    there at another version."""
    if parent is None:
        return tree
    before = {p.identity: p.version for p in parent.packages}
    return Inventory(tree.os_id, tree.os_version,
                     tuple(p for p in tree.packages if before.get(p.identity) != p.version))


def purl(package: Package, inventory: Inventory) -> str:
    """The package URL: its origin (the distribution, or the Python package index) in scanners' words."""
    from packageurl import PackageURL

    if package.kind == "pip":
        return PackageURL("pypi", None, package.name.lower().replace("_", "-"), package.version).to_string()
    qualifiers = {"arch": package.arch, "distro": f"{inventory.os_id}-{inventory.os_version}".strip("-")}
    if package.source and package.source != package.name:
        qualifiers["upstream"] = package.source
    return PackageURL(package.kind, inventory.os_id, package.name, package.version, qualifiers).to_string()


def document(inventory: Inventory, subject: str, subject_version: str, epoch: int, tool_version: str) -> str:
    """The CycloneDX 1.5 JSON of an inventory; `subject` (a layer or an
    image) is the component it describes."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.contact import OrganizationalEntity
    from cyclonedx.model.dependency import Dependency
    from cyclonedx.output.json import JsonV1Dot5

    root = Component(name=subject, version=subject_version, type=ComponentType.OPERATING_SYSTEM, bom_ref=f"factory:{subject}")
    components = []
    for p in inventory.packages:
        ref = purl(p, inventory)
        properties = [Property(name="factory:package-type", value=p.kind)]
        if p.source:
            properties.append(Property(name="factory:source-package", value=p.source))
        if p.location:
            properties.append(Property(name="factory:location", value=p.location))
        components.append(Component(
            name=p.name, version=p.version, type=ComponentType.LIBRARY if p.kind == "pip" else ComponentType.APPLICATION,
            purl=_purl_object(ref), bom_ref=f"{ref}#{p.location}" if p.location else ref, properties=properties,
            supplier=OrganizationalEntity(name=p.supplier) if p.supplier else None))
    metadata = BomMetaData(component=root, timestamp=datetime.fromtimestamp(epoch, timezone.utc))
    metadata.tools.components.add(Component(name="factory", version=tool_version, type=ComponentType.APPLICATION))
    bom = Bom(components=components, metadata=metadata,
              serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"factory:sbom:{subject}:{subject_version}"))
    bom.dependencies.add(Dependency(ref=root.bom_ref, dependencies=[Dependency(ref=c.bom_ref) for c in components]))
    return JsonV1Dot5(bom).output_as_string(indent=1)


def _purl_object(text: str):
    from packageurl import PackageURL

    return PackageURL.from_string(text)


def problems(text: str) -> str | None:
    """The library's own schema check of a CycloneDX 1.5 JSON document: None when valid."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    return None if error is None else str(error)
