#!/usr/bin/env python3
"""A stand-in for GitHub's releases API on 127.0.0.1, for the distribution tests only.

The real GitHub cannot be reached from CI, so this serves releases laid out by
packaging/build-release.sh:

  ROOT/latest -> a text file naming the release directory served as the newest (e.g. v0.2.0)
  ROOT/<tag>/release.json and the assets beside it

Routes (as GitHub's, under any path prefix such as /api/v3):
  GET .../repos/<owner>/<repo>/releases/latest       the JSON of ROOT/<contents of ROOT/latest>
  GET .../repos/<owner>/<repo>/releases/tags/<tag>   the JSON of ROOT/<tag> (a pinned version)
  GET .../repos/<owner>/<repo>/releases/assets/<id>  the asset (requires Accept: application/octet-stream)
  GET .../<owner>/<repo>/releases/download/<tag>/<name>   the asset (browser_download_url)
The release JSON is built with URLs on the placeholder origin http://releases.invalid; the mock
replaces it with its own address, as a mirror re-hosting the files would.
Every request is logged to ROOT/requests.log. Prints the port on stdout once listening.
"""
import http.server, json, os, sys

ROOT = os.path.abspath(sys.argv[1])
PLACEHOLDER = b"http://releases.invalid"


def releases():
    for tag in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, tag, "release.json")
        if os.path.isfile(path):
            yield tag, json.load(open(path))


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        with open(os.path.join(ROOT, "requests.log"), "a") as f:
            f.write("%s %s\n" % (self.path, self.headers.get("Accept", "")))

    def send(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def asset_file(self, tag, name):
        path = os.path.join(ROOT, tag, name)
        if "/" in name or not os.path.isfile(path):
            return None
        return open(path, "rb").read()

    def do_GET(self):
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if "releases" not in parts:
            return self.send(404, b'{"message":"Not Found"}')
        i = parts.index("releases")
        rest = parts[i + 1:]
        if rest == ["latest"] or (len(rest) == 2 and rest[0] == "tags"):
            try:
                tag = open(os.path.join(ROOT, "latest")).read().strip() if rest == ["latest"] else rest[1]
                if "/" in tag or tag.startswith("."):
                    raise OSError("bad tag")
                body = open(os.path.join(ROOT, tag, "release.json"), "rb").read()
                origin = "http://127.0.0.1:%d" % self.server.server_address[1]
                body = body.replace(PLACEHOLDER, origin.encode())
            except OSError:
                return self.send(404, b'{"message":"Not Found"}')
            return self.send(200, body)
        if len(rest) == 2 and rest[0] == "assets":
            if self.headers.get("Accept") != "application/octet-stream":
                return self.send(415, b'{"message":"use Accept: application/octet-stream"}')
            for tag, rel in releases():
                for a in rel.get("assets", []):
                    if str(a["id"]) == rest[1]:
                        data = self.asset_file(tag, a["name"])
                        if data is not None:
                            return self.send(200, data, "application/octet-stream")
            return self.send(404, b'{"message":"Not Found"}')
        if len(rest) == 3 and rest[0] == "download":
            data = self.asset_file(rest[1], rest[2])
            if data is not None:
                return self.send(200, data, "application/octet-stream")
        return self.send(404, b'{"message":"Not Found"}')


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
