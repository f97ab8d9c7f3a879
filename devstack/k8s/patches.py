"""The three PATCH flavours of the Kubernetes API: strategic merge, JSON merge, JSON patch.

Strategic merge follows the `patchMergeKey` of the built-in types this project touches
(containers by name, env by name, volume mounts by mount path, ...): a list with a merge key
is merged element by element, any other list is replaced, `null` deletes a key, and the
`$patch: delete | replace` directives work as in the API server.
"""

from __future__ import annotations

import copy
from typing import Any

# field name -> patchMergeKey, as declared in k8s.io/api for the types served here
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
}


class PatchError(ValueError):
    """A patch that cannot apply; `code` is the HTTP status the API server answers with."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def strategic_merge(original: Any, patch: Any) -> Any:
    """Apply a strategic merge patch to `original` (neither argument is modified)."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object", code=400)
    return _merge_map(original if isinstance(original, dict) else {}, patch)


def _merge_map(original: dict, patch: dict) -> dict:
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(original)
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys: ordering hints, nothing to merge
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                current = result.get(key)
                result[key] = _merge_map(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list) and key in MERGE_KEYS:
            current = result.get(key)
            result[key] = _merge_list(current if isinstance(current, list) else [], value, key)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(original: list, patch: list, field: str) -> list:
    merge_key = MERGE_KEYS[field]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(f"{field}: every element needs its merge key {merge_key!r}")
        position = next(
            (
                i
                for i, e in enumerate(result)
                if isinstance(e, dict) and e.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                del result[position]
        elif position is None:
            result.append(_merge_map({}, item))
        else:
            result[position] = _merge_map(result[position], item)
    return result


def json_merge(original: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge(result.get(key), value)
    return result


def json_patch(original: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise PatchError(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch", code=400
        )
    document = copy.deepcopy(original)
    for operation in operations:
        op = operation.get("op") if isinstance(operation, dict) else None
        path = operation.get("path", "") if isinstance(operation, dict) else ""
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"{op} operation on {path!r} has no value")
        if op == "add":
            document = _put(document, path, copy.deepcopy(operation["value"]), insert=True)
        elif op == "replace":
            _get(document, path)  # replace needs an existing target
            document = _put(document, path, copy.deepcopy(operation["value"]), insert=False)
        elif op == "remove":
            document = _remove(document, path)
        elif op in ("move", "copy"):
            value = copy.deepcopy(_get(document, operation.get("from", "")))
            if op == "move":
                document = _remove(document, operation["from"])
            document = _put(document, path, value, insert=True)
        elif op == "test":
            if _get(document, path) != operation["value"]:
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"unexpected json patch operation {op!r}", code=400)
    return document


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"json pointer {path!r} must start with '/'", code=400)
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _get(document: Any, path: str) -> Any:
    node = document
    for token in _tokens(path):
        node = _child(node, token, path)
    return node


def _child(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise PatchError(f"doc is missing path: {path!r}")


def _parent(document: Any, tokens: list[str], path: str) -> Any:
    node = document
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node


def _put(document: Any, path: str, value: Any, *, insert: bool) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _parent(document, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        index = len(parent) if last == "-" else int(last) if last.isdigit() else -1
        if index < 0 or index > len(parent) or (not insert and index == len(parent)):
            raise PatchError(f"index out of range in {path!r}")
        if insert:
            parent.insert(index, value)
        else:
            parent[index] = value
    else:
        raise PatchError(f"doc is missing path: {path!r}")
    return document


def _remove(document: Any, path: str) -> Any:
    tokens = _tokens(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(document, tokens, path)
    last = tokens[-1]
    _child(parent, last, path)
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[int(last)]
    return document
