#!/usr/bin/env python3
"""Write a single-layer container image as a docker-archive tarball (the format of
`docker save`), with no container engine: enough for `ctr images import` and for
`kind load image-archive`.

    mkimage.py --name lapidary/smoke:1 --out smoke.tar \
        --entrypoint /smoke --add build/smoke:/smoke [--add SRC:DEST ...] \
        [--env K=V ...] [--workdir /] [--user 65534]

Every added file is owned by root, gets mode 0755 if the source is executable and
0644 otherwise, and a fixed modification time, so the same inputs give the same
image digest. Parent directories are created as needed.
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = 0  # fixed mtime: reproducible layers


def add_dirs(tar, seen, dest):
    parts = dest.strip("/").split("/")[:-1]
    path = ""
    for part in parts:
        path = f"{path}/{part}" if path else part
        if path in seen:
            continue
        seen.add(path)
        info = tarfile.TarInfo(path)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.mtime = EPOCH
        tar.addfile(info)


def build_layer(files):
    buf = io.BytesIO()
    seen = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for src, dest in files:
            add_dirs(tar, seen, dest)
            with open(src, "rb") as fh:
                data = fh.read()
            info = tarfile.TarInfo(dest.lstrip("/"))
            info.size = len(data)
            info.mode = 0o755 if os.access(src, os.X_OK) else 0o644
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="image reference, e.g. lapidary/smoke:1")
    ap.add_argument("--out", required=True, help="output tarball")
    ap.add_argument("--add", action="append", default=[], metavar="SRC:DEST", help="file to add")
    ap.add_argument("--entrypoint", nargs="+", default=None)
    ap.add_argument("--cmd", nargs="+", default=None)
    ap.add_argument("--env", action="append", default=[], metavar="K=V")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--user", default="")
    ap.add_argument("--arch", default="amd64")
    args = ap.parse_args(argv)

    files = []
    for spec in args.add:
        src, sep, dest = spec.partition(":")
        if not sep or not dest.startswith("/"):
            ap.error(f"--add wants SRC:/ABS/DEST, got {spec!r}")
        files.append((src, dest))
    if not files:
        ap.error("add at least one file")

    layer = build_layer(files)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": args.arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args.env],
            "WorkingDir": args.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "kind-tests/tools/mkimage.py"}],
    }
    if args.entrypoint:
        config["config"]["Entrypoint"] = args.entrypoint
    if args.cmd:
        config["config"]["Cmd"] = args.cmd
    if args.user:
        config["config"]["User"] = args.user
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    layer_dir = diff_id.split(":", 1)[1]
    manifest = [{
        "Config": f"{config_digest}.json",
        "RepoTags": [args.name],
        "Layers": [f"{layer_dir}/layer.tar"],
    }]

    def put(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = EPOCH
        tar.addfile(info, io.BytesIO(data))

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(layer_dir)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.mtime = EPOCH
        tar.addfile(info)
        put(tar, f"{layer_dir}/layer.tar", layer)
        put(tar, f"{config_digest}.json", config_bytes)
        put(tar, "manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, args.out)
    print(f"{args.out}: {args.name} (config sha256:{config_digest})")


if __name__ == "__main__":
    main(sys.argv[1:])
