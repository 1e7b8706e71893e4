#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/ (see docs/fuzzing.md).

- plugin_config: the plugin configuration of each filter in envoy/*.yaml, plus variants;
- control_plane_bodies: every JSON body of a `curl -d` in docs/admin-api.md and
  docs/portal-api.md, behind the selector byte of its input type, plus a few hand-written ones;
- token, jwk_set, snapshot_binary, snapshot_json, path_and_routing: written by core's example
  `fuzz_seeds` (signed tokens, test JWK Sets, snapshot encodings), which this script runs.

Run from anywhere: `python3 fuzz/seeds.py`. Uses PyYAML (Debian's python3-yaml).
"""
import json
import pathlib
import re
import shutil
import subprocess

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"

# The selector byte of each input type in fuzz_targets/control_plane_bodies.rs, by route.
ROUTES = [
    (r"^/admin/v1/issuers", 0),
    (r"^/admin/v1/developers/[^/]+/reset-password$", 3),
    (r"^/admin/v1/developers/[^/]+$", 2),
    (r"^/admin/v1/developers$", 1),
    (r"^/admin/v1/oauth-clients/[^/]+/access$", 4),
    (r"^/admin/v1/gateway$", 5),
    (r"^/admin/v1/policies", 6),
    (r"^/admin/v1/catalogue/[^/]+/dcr$", 10),
    (r"^/admin/v1/catalogue(/[^/]+)?$", 7),
    (r"^/admin/v1/portal$", 8),
    (r"^/admin/v1/apis", 9),
    (r"^/admin/v1/dcr$", 10),
    (r"^/portal/api/v1/oauth-clients/[^/]+/redirect-uris$", 13),
    (r"^/portal/api/v1/oauth-clients$", 12),
    (r"^/portal/api/v1/signup$", 14),
    (r"^/portal/api/v1/login$", 15),
]

EXTRA_BODIES = [
    (2, {"email": "ada@example.com", "name": "Ada"}),
    (4, {"expires_at": None}),
    (4, {"expires_at": 1800000000, "catalogue_entry": "orders"}),
    (11, {"issuer": "gluu", "kid": "x5t#S256:abc"}),
    (13, {"redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1:8080/cb"]}),
    (12, {"catalogue_entries": ["orders"], "client_name": "App", "redirect_uris": [],
          "grant_types": ["client_credentials"]}),
]


def reset(name):
    path = CORPUS / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def plugin_configs():
    out = reset("plugin_config")
    for file in sorted((ROOT / "envoy").rglob("*.yaml")):
        for doc in yaml.safe_load_all(file.read_text()):
            for index, value in enumerate(string_values(doc)):
                try:
                    config = json.loads(value)
                except ValueError:
                    continue
                stem = f"{file.stem}-{index}"
                (out / f"{stem}.json").write_text(json.dumps(config, indent=2))
                variant = dict(config, log_level="debug",
                               token_cache={"capacity": 10, "max_ttl_seconds": 30})
                (out / f"{stem}-variant.json").write_text(json.dumps(variant))


def string_values(node):
    """The `value` of every google.protobuf.StringValue in an Envoy config."""
    if isinstance(node, dict):
        if node.get("@type", "").endswith("google.protobuf.StringValue"):
            yield node.get("value", "")
        for child in node.values():
            yield from string_values(child)
    elif isinstance(node, list):
        for child in node:
            yield from string_values(child)


def bodies():
    out = reset("control_plane_bodies")
    count = 0
    for doc in ("admin-api.md", "portal-api.md"):
        text = (ROOT / "docs" / doc).read_text()
        for match in re.finditer(r"curl\b(.*?)-d '((?:[^']|'\\'')*)'", text, re.S):
            urls = re.findall(r"(/(?:admin|portal/api)/v1/[^\s\"'?`]*)", match.group(1))
            body = match.group(2).replace("'\\''", "'")
            if not urls:
                continue
            selector = next((s for pattern, s in ROUTES if re.search(pattern, urls[-1])), None)
            if selector is None or not body.lstrip().startswith("{"):
                continue
            count += 1
            (out / f"doc-{count:02}-{selector}").write_bytes(bytes([selector]) + body.encode())
    for index, (selector, body) in enumerate(EXTRA_BODIES):
        (out / f"extra-{index:02}-{selector}").write_bytes(
            bytes([selector]) + json.dumps(body).encode())


def core_seeds():
    for name in ("token", "jwk_set", "snapshot_binary", "snapshot_json", "path_and_routing"):
        reset(name)
    subprocess.run(["cargo", "run", "--quiet", "-p", "portico-core", "--example", "fuzz_seeds",
                    "--", str(CORPUS)], cwd=ROOT, check=True)


plugin_configs()
bodies()
core_seeds()
for target in sorted(CORPUS.iterdir()):
    files = list(target.iterdir())
    print(f"{target.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")
