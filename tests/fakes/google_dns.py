"""A named fake of the Cloud DNS v1 REST API, served over HTTP on 127.0.0.1.

Implements the documented shapes the google-cloud-dns client uses:

- ``GET  /dns/v1/projects/{p}/managedZones`` (``dns#managedZonesListResponse``)
- ``GET  /dns/v1/projects/{p}/managedZones/{zone}``
- ``GET  /dns/v1/projects/{p}/managedZones/{zone}/rrsets?name=&type=``
- ``POST /dns/v1/projects/{p}/managedZones/{zone}/changes`` (``additions``/``deletions``):
  a deletion must match the current set exactly (else ``412 conditionNotMet``), an
  addition of an existing set that is not also deleted is ``409 alreadyExists``;
  the change starts ``pending`` and is ``done`` when read back
- ``GET  /dns/v1/projects/{p}/managedZones/{zone}/changes/{id}``

Errors use Google's JSON error format. A project not in the fake is ``403 forbidden``.
Start with :meth:`FakeCloudDNS.start`; ``endpoint`` is the client's ``api_endpoint``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Key = tuple[str, str]  # (name with trailing dot, type)


class FakeCloudDNS:
    """In-memory Cloud DNS for some projects."""

    def __init__(self) -> None:
        self.projects: dict[str, dict[str, dict[str, Any]]] = {}  # project -> zone -> zone
        self.records: dict[tuple[str, str], dict[Key, dict[str, Any]]] = {}
        self.changes: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.before_change: Callable[[str, str], None] | None = None  # hook: (project, zone)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up and inspection --------------------------------------------------------------

    def add_zone(self, project: str, name: str, dns_name: str) -> None:
        """Create a managed zone ``name`` for ``dns_name`` (``example.com.``)."""
        zones = self.projects.setdefault(project, {})
        zones[name] = {
            "kind": "dns#managedZone",
            "name": name,
            "dnsName": dns_name if dns_name.endswith(".") else dns_name + ".",
            "description": "",
            "id": str(1000 + len(zones)),
            "nameServers": [f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)],
            "creationTime": "2024-01-01T00:00:00.000Z",
            "visibility": "public",
        }
        self.records[(project, name)] = {}
        self.changes[(project, name)] = {}

    def rrdatas(self, project: str, zone: str, name: str, rtype: str = "TXT") -> list[str]:
        """The raw rrdatas of a set (inspection)."""
        rrset = self.records[(project, zone)].get((name.rstrip(".") + ".", rtype))
        return list(rrset["rrdatas"]) if rrset else []

    def put_raw(self, project: str, zone: str, name: str, rrdatas: list[str]) -> None:
        """Replace a TXT set directly (another writer)."""
        with self._lock:
            key = (name.rstrip(".") + ".", "TXT")
            self.records[(project, zone)][key] = {
                "kind": "dns#resourceRecordSet",
                "name": key[0],
                "type": "TXT",
                "ttl": 300,
                "rrdatas": list(rrdatas),
            }

    # -- server -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{host}:{port}"

    def start(self) -> FakeCloudDNS:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = fake.handle(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- API --------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: bytes) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        self.requests.append((method, path))
        prefix = "/dns/v1/projects/"
        if not path.startswith(prefix):
            return _error(404, "notFound", f"Not Found: {path}")
        segments = path[len(prefix) :].strip("/").split("/")
        project = segments[0]
        if project not in self.projects:
            return _error(
                403,
                "forbidden",
                f"The caller does not have permission (project {project}: "
                "dns.managedZones.list denied)",
            )
        zones = self.projects[project]
        with self._lock:
            if segments[1:] == ["managedZones"] and method == "GET":
                return 200, {
                    "kind": "dns#managedZonesListResponse",
                    "managedZones": list(zones.values()),
                }
            if len(segments) < 3 or segments[1] != "managedZones":
                return _error(404, "notFound", f"Not Found: {path}")
            zone = zones.get(segments[2])
            if zone is None:
                return _error(
                    404,
                    "notFound",
                    f"The 'parameters.managedZone' resource named '{segments[2]}' does not exist.",
                )
            key = (project, segments[2])
            rest = segments[3:]
            if not rest and method == "GET":
                return 200, zone
            if rest == ["rrsets"] and method == "GET":
                rrsets = [
                    r
                    for (name, rtype), r in sorted(self.records[key].items())
                    if ("name" not in query or name == query["name"])
                    and ("type" not in query or rtype == query["type"])
                ]
                return 200, {"kind": "dns#resourceRecordSetsListResponse", "rrsets": rrsets}
            if rest == ["changes"] and method == "POST":
                return self._change(project, key, zone, body)
            if len(rest) == 2 and rest[0] == "changes" and method == "GET":
                change = self.changes[key].get(rest[1])
                if change is None:
                    return _error(
                        404,
                        "notFound",
                        f"The 'parameters.changeId' resource named '{rest[1]}' does not exist.",
                    )
                change["status"] = "done"
                return 200, change
        return _error(404, "notFound", f"Not Found: {method} {path}")

    def _change(
        self, project: str, key: tuple[str, str], zone: dict[str, Any], body: bytes
    ) -> tuple[int, Any]:
        if self.before_change is not None:
            hook, self.before_change = self.before_change, None
            hook(project, zone["name"])
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "parseError", "Parse Error")
        additions = payload.get("additions", [])
        deletions = payload.get("deletions", [])
        if not additions and not deletions:
            return _error(
                400, "required", "The 'entity.change' parameter is required but was missing."
            )
        records = self.records[key]
        for i, deleted in enumerate(deletions):
            rkey = (deleted["name"], deleted["type"])
            current = records.get(rkey)
            if current is None:
                return _error(
                    404,
                    "notFound",
                    f"The 'entity.change.deletions[{i}]' resource named '{deleted['name']} "
                    f"({deleted['type']})' does not exist.",
                )
            if int(deleted.get("ttl", current["ttl"])) != current["ttl"] or sorted(
                deleted.get("rrdatas", [])
            ) != sorted(current["rrdatas"]):
                return _error(
                    412,
                    "conditionNotMet",
                    f"Precondition not met for 'entity.change.deletions[{i}]'",
                )
        deleted_keys = {(d["name"], d["type"]) for d in deletions}
        for i, added in enumerate(additions):
            rkey = (added["name"], added["type"])
            if not added["name"].endswith(zone["dnsName"]):
                return _error(
                    400,
                    "invalid",
                    f"Invalid value for 'entity.change.additions[{i}].name': '{added['name']}'",
                )
            if rkey in records and rkey not in deleted_keys:
                return _error(
                    409,
                    "alreadyExists",
                    f"The resource 'entity.change.additions[{i}]' named '{added['name']} "
                    f"({added['type']})' already exists",
                )
        for rkey in deleted_keys:
            del records[rkey]
        for added in additions:
            records[(added["name"], added["type"])] = {
                "kind": "dns#resourceRecordSet",
                "name": added["name"],
                "type": added["type"],
                "ttl": int(added.get("ttl", 300)),
                "rrdatas": list(added["rrdatas"]),
            }
        change_id = str(len(self.changes[key]) + 1)
        change = {
            "kind": "dns#change",
            "id": change_id,
            "startTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "status": "pending",
            "additions": additions,
            "deletions": deletions,
        }
        self.changes[key][change_id] = change
        return 200, dict(change)


def _error(status: int, reason: str, message: str) -> tuple[int, Any]:
    return status, {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }
