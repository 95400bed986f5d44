"""A small ModelScope on 127.0.0.1 that the real `modelscope` client downloads from.

It implements the endpoints the installed client (modelscope 1.40 / modelscope-hub 0.5) calls for model and data
set snapshots: the file listing (`/repo/files`, `/repo/tree`) and the file download (`/repo?FilePath=...`, honouring
Range). Tests can make it
cut a transfer midway, serve corrupted bytes, or stop answering; `requests` records every call.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    listed_sha256: bool = True  # the real hub lists sha256 for LFS files
    listed_sizes: dict[str, int] = field(default_factory=dict)  # sizes to claim instead of the real ones


@dataclass
class FakeModelScope:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    datasets: dict[str, FakeRepo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    ranges: list[tuple[str, str]] = field(default_factory=list)  # (path, Range header) of each ranged download
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the connection drops (once)
    corrupt: set[str] = field(default_factory=set)  # paths served with one byte flipped
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def downloads(self) -> list[str]:
        return [r for r in self.requests if "FilePath=" in r]

    def start(self) -> FakeModelScope:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head: bool = False):
                fake.requests.append(self.path)
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = [unquote(p) for p in url.path.strip("/").split("/")]
                # /api/v1/{models|datasets}/{owner}/{name}[/repo[/files|/tree]]
                if len(parts) < 5 or parts[:2] != ["api", "v1"] or parts[2] not in ("models", "datasets"):
                    return self._json(404, {"Code": 10010205001, "Message": "not found", "Success": False})
                repo = (fake.repos if parts[2] == "models" else fake.datasets).get(f"{parts[3]}/{parts[4]}")
                if repo is None:
                    return self._json(404, {"Code": 10010205001, "Message": f"model {parts[3]}/{parts[4]} not exists",
                                            "Success": False})
                rest = parts[5:]
                if rest == []:
                    return self._json(200, {"Code": 200, "Success": True,
                                            "Data": {"Id": 1, "Name": parts[4], "Path": parts[3],
                                                     "Namespace": parts[3]}})
                if rest == ["revisions"]:
                    return self._json(200, {"Code": 200, "Success": True,
                                            "Data": {"RevisionMap": {"Branches": [{"Revision": "master"}],
                                                                     "Tags": []}}})
                if rest in (["repo", "files"], ["repo", "tree"]):  # models list files, datasets a tree
                    listing = [{"Name": p.rsplit("/", 1)[-1], "Path": p, "Type": "blob",
                                "Size": repo.listed_sizes.get(p, len(b)),
                                "Revision": "master",
                                **({"Sha256": hashlib.sha256(b).hexdigest()} if repo.listed_sha256 else {})}
                               for p, b in sorted(repo.files.items())]
                    return self._json(200, {"Code": 200, "Success": True, "Data": {"Files": listing}})
                if rest == ["repo"] and "FilePath" in query:
                    return self._file(repo, query["FilePath"], head)
                return self._json(404, {"Code": 404, "Message": "unknown endpoint", "Success": False})

            def _file(self, repo: FakeRepo, path: str, head: bool) -> None:
                if path not in repo.files:
                    return self._json(404, {"Code": 404, "Message": f"file {path} not found", "Success": False})
                data = repo.files[path]
                if path in fake.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = 0
                if rng := self.headers.get("Range"):
                    fake.ranges.append((path, rng))
                    start = int(rng.split("=")[1].split("-")[0])
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if head:
                    return
                cut = fake.cut_after.pop(path, None)
                if cut is not None and cut < len(body):
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # drop the connection mid-file, as a flaky network does
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
