"""Provenance: an in-toto Statement v1 carrying a SLSA provenance v1
predicate, for a layer and for an image (pure).

A layer's statement names the layer image (its config digest, which a pull
checks against the image it got) and records what its key is made of: the
parent layer, every element tree hash, the builder image, the target, the
explicit environment (secrets as the key holds them: hashes). No clock enters
it, so the same layer gives the same statement.
"""

from __future__ import annotations

import hashlib
import json

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
LAYER_BUILD = "urn:factory:build-type:layer:v1"
IMAGE_BUILD = "urn:factory:build-type:image:v1"


def _sha256(digest: str) -> dict[str, str]:
    """{"sha256": hex} from "sha256:hex" or a bare hex digest."""
    return {"sha256": digest.partition(":")[2] if ":" in digest else digest}


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layer_statement(key: str, image_id: str, diff_ids: list[str], inputs: dict, target: str, sbom: bytes,
                    factory_version: str, parent_image_id: str | None) -> dict:
    """`inputs` is the layer's key inputs as its labels carry them (KeyInputs.canonical())."""
    dependencies = [{"name": f"element:{name}", "digest": _sha256(tree)} for name, tree in sorted(inputs.get("elements", {}).items())]
    dependencies.append({"name": "builder-image", "digest": _sha256(inputs.get("builder_image", ""))})
    if inputs.get("parent"):
        parent = {"name": "parent-layer", "uri": f"factory-layer:{inputs['parent']}", "annotations": {"key": inputs["parent"]}}
        if parent_image_id:
            parent["digest"] = _sha256(parent_image_id)
        dependencies.append(parent)
    for value, content in sorted((inputs.get("host_inputs") or {}).items()):
        dependencies.append({"name": f"host-input:{value}", "annotations": {"content": content}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": f"factory-layer:{key}", "digest": _sha256(image_id)}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": LAYER_BUILD,
                "externalParameters": {"layer": inputs.get("layer"), "key": key, "parent": inputs.get("parent"),
                                       "target": target, "env": inputs.get("env", {}), "packages": inputs.get("packages", [])},
                "internalParameters": {"phases": inputs.get("phases", []), "elements_run": inputs.get("new_elements", []),
                                       "dib_version": inputs.get("dib_version"), "engine": inputs.get("engine"),
                                       "key_schema": inputs.get("schema")},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": f"urn:factory:builder:{factory_version}"},
                "metadata": {"invocationId": key},
                "byproducts": [{"name": "sbom.cdx.json", "digest": {"sha256": digest_of(sbom)}, "mediaType": "application/vnd.cyclonedx+json"},
                               *({"name": f"diff:{i}", "digest": _sha256(d)} for i, d in enumerate(diff_ids))],
            },
        },
    }


def image_statement(files: dict[str, str], assembly_key: str, target: dict, layers: list[dict], builder_image: str,
                    sbom: bytes, factory_version: str) -> dict:
    """`files`: image file name -> sha256; `layers`: name, key, image id of each layer."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": sha}} for name, sha in sorted(files.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": IMAGE_BUILD,
                "externalParameters": {"target": target, "assembly_key": assembly_key},
                "internalParameters": {},
                "resolvedDependencies": [
                    *({"name": f"layer:{l['layer']}", "uri": f"factory-layer:{l['key']}", "digest": _sha256(l["image_id"])} for l in layers),
                    {"name": "builder-image", "digest": _sha256(builder_image)},
                ],
            },
            "runDetails": {
                "builder": {"id": f"urn:factory:builder:{factory_version}"},
                "metadata": {"invocationId": assembly_key},
                "byproducts": [{"name": "sbom.cdx.json", "digest": {"sha256": digest_of(sbom)}, "mediaType": "application/vnd.cyclonedx+json"}],
            },
        },
    }


def encode(statement: dict) -> bytes:
    """The bytes that are signed: canonical JSON."""
    return (json.dumps(statement, sort_keys=True, indent=1) + "\n").encode()


def subject_digest(statement: dict, name: str) -> str | None:
    """The sha256 the statement gives the named subject ("sha256:hex"), if it names it."""
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        return None
    for subject in statement.get("subject") or []:
        if subject.get("name") == name and (subject.get("digest") or {}).get("sha256"):
            return "sha256:" + subject["digest"]["sha256"]
    return None
