#!/usr/bin/env python3
"""Authenticated smart-HTTP git server for the test cluster: `git http-backend`
behind a small stdlib HTTP server. Serves every repository under --root (clone,
fetch and push).

Authentication (every request, reads included): either
  Authorization: Basic base64(USER:TOKEN)   any user name (x-access-token by convention)
  Authorization: Bearer TOKEN
where TOKEN is the content of --token-file (surrounding whitespace ignored).
A request without valid credentials gets 401 with a Basic challenge, which makes a
git client retry with the credentials of its URL or credential helper, e.g.
  git clone http://x-access-token:TOKEN@10.88.0.1:18080/repo.git
  git -c http.extraHeader="Authorization: Bearer TOKEN" clone http://10.88.0.1:18080/repo.git

Usage: git-http.py --root DIR --token-file FILE --listen 127.0.0.1 [--listen 10.88.0.1] --port 18080
"""
import argparse
import base64
import hmac
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

ARGS = None
TOKEN = b""


def authorized(header):
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return "bearer" if hmac.compare_digest(value.encode(), TOKEN) else None
    if scheme.lower() == "basic":
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if sep and hmac.compare_digest(password.encode(), TOKEN):
            return user or "token"
    return None


class Handler(BaseHTTPRequestHandler):
    server_version = "lapidary-git-http/1"

    def log_message(self, fmt, *args):  # to stderr, without credentials
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def deny(self):
        body = b"authentication required\n"
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="lapidary-git"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self, out):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        raise ConnectionError("short chunk")
                    out.write(chunk)
                    remaining -= len(chunk)
                self.rfile.readline(3)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    raise ConnectionError("short body")
                out.write(chunk)
                remaining -= len(chunk)
        out.flush()
        out.seek(0)

    def handle_git(self):
        user = authorized(self.headers.get("Authorization"))
        if user is None:
            self.deny()
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": ARGS.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "HOME": ARGS.root,
        }
        for name in ("Content-Encoding", "Git-Protocol", "Accept"):
            if self.headers.get(name):
                env["HTTP_" + name.upper().replace("-", "_")] = self.headers[name]
        with tempfile.TemporaryFile() as body:
            self.read_body(body)
            env["CONTENT_LENGTH"] = str(os.fstat(body.fileno()).st_size)
            proc = subprocess.Popen(["git", "http-backend"], stdin=body, stdout=subprocess.PIPE,
                                    stderr=sys.stderr, env=env)
            status, headers = 200, []
            while True:
                line = proc.stdout.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                else:
                    headers.append((name, value.strip()))
            # libgit2 (the integrator's git) cannot read a response whose body ends at
            # connection close: spool the body and send its Content-Length.
            with tempfile.TemporaryFile() as payload:
                shutil.copyfileobj(proc.stdout, payload, 1 << 16)
                proc.wait()
                size = payload.tell()
                payload.seek(0)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(size))
                self.send_header("Connection", "close")
                self.end_headers()
                shutil.copyfileobj(payload, self.wfile, 1 << 16)
        self.close_connection = True

    do_GET = handle_git
    do_POST = handle_git


def main():
    global ARGS, TOKEN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--listen", action="append", required=True)
    ap.add_argument("--port", type=int, default=18080)
    ARGS = ap.parse_args()
    ARGS.root = os.path.abspath(ARGS.root)
    with open(ARGS.token_file, "rb") as fh:
        TOKEN = fh.read().strip()
    if not TOKEN:
        sys.exit("empty token file")
    servers = []
    for address in ARGS.listen:
        srv = ThreadingHTTPServer((address, ARGS.port), Handler)
        srv.daemon_threads = True
        servers.append(srv)
        sys.stderr.write(f"serving {ARGS.root} on http://{address}:{ARGS.port}/\n")
    sys.stderr.flush()
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        servers[0].serve_forever()
    finally:
        for srv in servers:
            srv.server_close()


if __name__ == "__main__":
    main()
