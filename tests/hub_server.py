"""A Hub-compatible HTTP server for tests: the endpoints that huggingface_hub and diffusers use, on 127.0.0.1 only.

No package on PyPI serves this offline (the one that comes close, hf-local-hub, needs a separate Go binary), so this
is a small standard-library server. It keeps model repos in memory, with branches and commits, and answers:

- `GET /api/models/{repo_id}` and `GET /api/models/{repo_id}/revision/{revision}`: repo info (`sha`, `siblings`);
- `GET /api/models/{repo_id}/tree/{revision}[/{path}]`: the file listing `snapshot_download` reads;
- `HEAD`/`GET /{repo_id}/resolve/{revision}/{path}`: files, with `X-Repo-Commit`, `ETag` and `Content-Length`;
- `POST /api/repos/create`, `POST /api/models/{repo_id}/branch/{branch}`, `POST /api/validate-yaml`;
- `POST /api/models/{repo_id}/preupload/{revision}`: answers "regular" for every file, so no LFS or Xet upload;
- `POST /api/models/{repo_id}/commit/{revision}`: the NDJSON commit, with base64 file contents.

Errors carry the `X-Error-Code` header huggingface_hub maps to its exceptions (`RepoNotFound`, `RevisionNotFound`,
`EntryNotFound`). Writes need a token the server knows. Every request is recorded, so tests can count downloads and
check that no endpoint outside this list was called (`unhandled`). The server is bounded: it binds 127.0.0.1 on a
free port, caps request count and body size, and stops itself after `lifetime_s` if the test has not stopped it.
"""

import base64
import hashlib
import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_oid(content: bytes) -> str:
    """The git blob id of `content`: what the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # unquoted path, without the query
    query: dict
    authorization: str | None
    time: float  # when the server received it (time.time(), comparable with a client process's clock)
    status: int = 0
    repo_id: str | None = None
    revision: str | None = None
    filename: str | None = None  # set for file downloads (`resolve`)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class _Repo:
    def __init__(self, repo_id: str, private: bool, initial_sha: str):
        self.repo_id = repo_id
        self.private = private
        self.commits: dict[str, dict[str, bytes]] = {initial_sha: {".gitattributes": b""}}
        self.branches: dict[str, str] = {"main": initial_sha}
        self.created_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    def resolve(self, revision: str) -> str:
        """Commit sha of a branch name or a full commit sha."""
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class HubServer:
    """In-memory Hub on `http://127.0.0.1:{port}`; use as a context manager, or call `start()` and `stop()`."""

    def __init__(
        self,
        tokens: tuple[str, ...] = ("hf_test_token",),
        max_requests: int = 5000,
        max_body_bytes: int = 64 * 1024 * 1024,
        lifetime_s: float = 600.0,
    ):
        self.tokens = set(tokens)
        self.max_requests = max_requests
        self.max_body_bytes = max_body_bytes
        self.lifetime_s = lifetime_s
        self.requests: list[Request] = []
        self.unhandled: list[Request] = []
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._stopped = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        handler = type("HubHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # loopback only, any free port
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        # Stop by itself if a test forgets to (or hangs): the server never outlives its bound.
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped.is_set() or self._httpd is None:
                return
            self._stopped.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    @property
    def running(self) -> bool:
        return self._httpd is not None and not self._stopped.is_set()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- state, for tests -----------------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes] | str | Path, private: bool = False) -> str:
        """Create `repo_id` with one commit holding `files` (a mapping, or a local folder); returns the commit sha."""
        if not isinstance(files, dict):
            root = Path(files)
            files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        with self._lock:
            if repo_id in self._repos:
                raise ValueError(f"{repo_id} exists")
            repo = self._repos[repo_id] = _Repo(repo_id, private, self._new_sha(repo_id))
            return self._commit(repo, "main", "Initial upload", dict(files), deleted=())

    def repo_files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            repo = self._repos[repo_id]
            return dict(repo.commits[repo.resolve(revision)])

    def repo_is_private(self, repo_id: str) -> bool:
        return self._repos[repo_id].private

    def head(self, repo_id: str, branch: str = "main") -> str:
        return self._repos[repo_id].branches[branch]

    def has_repo(self, repo_id: str) -> bool:
        return repo_id in self._repos

    def count(self, method: str | None = None, repo_id: str | None = None, filename: str | None = None,
              path_prefix: str | None = None) -> int:
        """How many recorded requests match all the given fields."""
        with self._lock:
            return sum(
                (method is None or r.method == method)
                and (repo_id is None or r.repo_id == repo_id)
                and (filename is None or r.filename == filename)
                and (path_prefix is None or r.path.startswith(path_prefix))
                for r in self.requests
            )

    # -- internals --------------------------------------------------------------------------------------------------

    def _new_sha(self, salt: str) -> str:
        return hashlib.sha1(f"{salt}:{next(self._counter)}:{time.time_ns()}".encode()).hexdigest()

    def _commit(self, repo: _Repo, branch: str, summary: str, added: dict[str, bytes], deleted) -> str:
        """Apply a commit on `branch` (lock held); returns the new sha."""
        files = dict(repo.commits[repo.branches[branch]])
        for path in deleted:
            files = {p: c for p, c in files.items() if p != path and not p.startswith(path.rstrip("/") + "/")}
        files.update(added)
        sha = self._new_sha(f"{repo.repo_id}:{summary}")
        repo.commits[sha] = files
        repo.branches[branch] = sha
        return sha

    def _repo(self, repo_id: str, authorization: str | None) -> _Repo:
        repo = self._repos.get(repo_id)
        # Like the Hub, a private repo is indistinguishable from a missing one without a valid token.
        if repo is None or (repo.private and not self._authorized(authorization)):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _authorized(self, authorization: str | None) -> bool:
        return bool(authorization) and authorization.removeprefix("Bearer ").strip() in self.tokens

    def _require_token(self, authorization: str | None) -> None:
        if not authorization:
            raise HubError(401, "You must be authenticated to access this resource.")
        if not self._authorized(authorization):
            raise HubError(401, "Invalid credentials in Authorization header")


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer  # set on the subclass made by HubServer.start
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every response sets Content-Length
    timeout = 30  # seconds an idle connection is kept

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- plumbing -----------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        # Revisions arrive quoted with safe="" ("refs%2Fpr%2F1"): split first, then unquote each part.
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        self._request = dict(method=method, path=unquote(split.path), authorization=self.headers.get("Authorization"),
                             query={k: v[-1] for k, v in parse_qs(split.query).items()}, time=time.time())
        self._info, self._recorded, self._handler = {}, False, None
        try:
            with hub._lock:
                over_limit = len(hub.requests) >= hub.max_requests
            if over_limit:
                self.close_connection = True
                raise HubError(503, "Request limit of the test server reached")
            body = self._read_body()  # always read it, so a kept-alive connection stays in sync
            self._handler = self._route(method, parts)
            if self._handler is None:
                raise HubError(404, f"Not implemented by the test server: {method} {split.path}")
            self._handler(parts, self._request["query"], self._request["authorization"], body)
        except HubError as error:
            headers = dict(error.headers)
            if error.code:
                headers["X-Error-Code"] = error.code
            headers["X-Error-Message"] = error.message
            self._send(error.status, json.dumps({"error": error.message}).encode(), headers, "application/json")
        except Exception as error:  # a bug here: answer 500 rather than drop the connection
            self._send(500, json.dumps({"error": repr(error)}).encode(), {}, "application/json")

    def _record(self, status: int) -> None:
        """Log the request (before its response goes out, so a client never sees a reply the log lacks)."""
        if self._recorded:
            return
        self._recorded = True
        request = Request(status=status, **self._request, **self._info)
        with self.hub._lock:
            self.hub.requests.append(request)
            if self._handler is None and status != 503:
                self.hub.unhandled.append(request)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise HubError(411, "Chunked uploads are not supported by the test server")
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.hub.max_body_bytes:
            self.close_connection = True
            raise HubError(413, f"Body over {self.hub.max_body_bytes} bytes")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict | None = None, content_type: str | None = None) -> None:
        self._record(status)
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))  # for HEAD too: the size the GET would send
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, data, status: int = 200, headers: dict | None = None) -> int:
        self._send(status, json.dumps(data).encode(), headers, "application/json")
        return status

    def _route(self, method: str, parts: list[str]):
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            verb = parts[4] if len(parts) > 4 else None
            if method == "GET" and (verb is None or (verb == "revision" and len(parts) == 6)):
                return self._model_info
            if method == "GET" and verb == "tree" and len(parts) >= 6:
                return self._tree
            if method == "POST" and verb in ("preupload", "commit", "branch") and len(parts) == 6:
                return {"preupload": self._preupload, "commit": self._commit, "branch": self._branch}[verb]
            return None
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create_repo
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._validate_yaml
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve" and parts[0] != "api":
            return self._resolve
        return None

    def _json_body(self, body: bytes) -> dict:
        try:
            return json.loads(body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid JSON body: {error}")

    # -- read endpoints -----------------------------------------------------------------------------------------

    def _model_info(self, parts, query, auth, body) -> int:
        repo_id = f"{parts[2]}/{parts[3]}"
        revision = parts[5] if len(parts) == 6 else "main"
        self._info = {"repo_id": repo_id, "revision": revision}
        with self.hub._lock:
            repo = self.hub._repo(repo_id, auth)
            sha = repo.resolve(revision)
            files = repo.commits[sha]
            siblings = [{"rfilename": path} for path in sorted(files)]
            private, created_at = repo.private, repo.created_at
        if "blobs" in query:
            for sibling in siblings:
                content = files[sibling["rfilename"]]
                sibling.update(size=len(content), blobId=git_blob_oid(content))
        return self._json({
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": sha, "private": private, "gated": False, "disabled": False,
            "lastModified": created_at, "createdAt": created_at, "tags": [], "library_name": None,
            "siblings": siblings,
        })

    def _tree(self, parts, query, auth, body) -> int:
        repo_id = f"{parts[2]}/{parts[3]}"
        revision, prefix = parts[5], "/".join(parts[6:])
        self._info = {"repo_id": repo_id, "revision": revision}
        recursive = query.get("recursive", "false").lower() in ("1", "true")
        with self.hub._lock:
            repo = self.hub._repo(repo_id, auth)
            files = repo.commits[repo.resolve(revision)]
        base = prefix.rstrip("/") + "/" if prefix else ""
        entries, folders = [], set()
        for path in sorted(files):
            if not path.startswith(base):
                continue
            rest = path[len(base):]
            if "/" in rest and not recursive:
                folders.add(base + rest.split("/")[0])
                continue
            if recursive:
                folders.update(base + "/".join(rest.split("/")[: i + 1]) for i in range(rest.count("/")))
            content = files[path]
            entries.append({"type": "file", "oid": git_blob_oid(content), "size": len(content), "path": path})
        if base and not entries and not folders:
            raise HubError(404, f"{prefix} does not exist on {revision}", "EntryNotFound")
        entries += [
            {"type": "directory", "oid": git_blob_oid(f.encode()), "size": 0, "path": f} for f in sorted(folders)
        ]
        return self._json(entries)

    def _resolve(self, parts, query, auth, body) -> int:
        repo_id, revision, filename = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
        self._info = {"repo_id": repo_id, "revision": revision, "filename": filename}
        with self.hub._lock:
            repo = self.hub._repo(repo_id, auth)
            sha = repo.resolve(revision)
            content = repo.commits[sha].get(filename)
        if content is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        oid = git_blob_oid(content)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{oid}"', "Accept-Ranges": "bytes"}
        status, payload = 200, content
        byte_range = self.headers.get("Range", "")
        if byte_range.startswith("bytes=") and self.command == "GET":
            start_text, _, end_text = byte_range[len("bytes="):].partition("-")
            start = int(start_text or 0)
            end = int(end_text) if end_text else len(content) - 1
            if start >= len(content):
                raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(content)}"})
            payload = content[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(payload) - 1}/{len(content)}"
            status = 206
        self._send(status, payload, headers, "application/octet-stream")
        return status

    # -- write endpoints ----------------------------------------------------------------------------------------

    def _create_repo(self, parts, query, auth, body) -> int:
        self.hub._require_token(auth)
        payload = self._json_body(body)
        repo_type = payload.get("type") or "model"
        if repo_type != "model":
            raise HubError(400, f"The test server only hosts model repos, not {repo_type!r}")
        name, organization = payload.get("name"), payload.get("organization")
        if not name or not organization:
            raise HubError(400, "The test server needs an explicit namespace: 'namespace/name'")
        repo_id = f"{organization}/{name}"
        self._info = {"repo_id": repo_id}
        url = f"{self.hub.url}/{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        with self.hub._lock:
            exists = repo_id in self.hub._repos
            if not exists:
                self.hub._repos[repo_id] = _Repo(repo_id, private, self.hub._new_sha(repo_id))
        if exists:  # huggingface_hub's exist_ok=True expects 409, with the url in the body
            return self._json({"error": "You already created this model repo", "url": url}, status=409)
        return self._json({"url": url, "name": repo_id, "id": repo_id})

    def _branch(self, parts, query, auth, body) -> int:
        self.hub._require_token(auth)
        repo_id, branch = f"{parts[2]}/{parts[3]}", parts[5]
        self._info = {"repo_id": repo_id, "revision": branch}
        start = self._json_body(body).get("startingPoint") or "main"
        with self.hub._lock:
            repo = self.hub._repo(repo_id, auth)
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: {branch}")
            repo.branches[branch] = repo.resolve(start)
        return self._json({})

    def _validate_yaml(self, parts, query, auth, body) -> int:
        self._json_body(body)
        return self._json({"errors": [], "warnings": []})

    def _preupload(self, parts, query, auth, body) -> int:
        self.hub._require_token(auth)
        repo_id, revision = f"{parts[2]}/{parts[3]}", parts[5]
        self._info = {"repo_id": repo_id, "revision": revision}
        payload = self._json_body(body)
        with self.hub._lock:
            repo = self.hub._repo(repo_id, auth)
            current = repo.commits[repo.resolve(revision)]
        files = []
        for file in payload.get("files", []):
            existing = current.get(file["path"])
            files.append({
                "path": file["path"],
                "uploadMode": "regular",  # never "lfs": the client then sends contents inline in the commit
                "shouldIgnore": False,
                "oid": git_blob_oid(existing) if existing is not None else None,
            })
        return self._json({"files": files, "commitOid": repo.branches.get(revision)})

    def _commit(self, parts, query, auth, body) -> int:
        self.hub._require_token(auth)
        repo_id, branch = f"{parts[2]}/{parts[3]}", parts[5]
        self._info = {"repo_id": repo_id, "revision": branch}
        summary, added, deleted, parent = "", {}, [], None
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value", {})
            if key == "header":
                summary, parent = value.get("summary", ""), value.get("parentCommit")
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                added[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:
                raise HubError(422, f"The test server takes regular files only, got a {key!r} operation")
        with self.hub._lock:
            repo = self.hub._repo(repo_id, auth)
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if parent is not None and not repo.branches[branch].startswith(parent):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            sha = self.hub._commit(repo, branch, summary, added, deleted)
        return self._json({"success": True, "commitOid": sha, "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}"})
