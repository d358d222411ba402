"""Build every container image of the system from a base made here, with no registry.

``python -m tradeflow.infra.images build`` (``make images``) builds, in order:

- ``tradeflow-base:bookworm``: Debian bookworm minbase with Python 3.11, made by
  ``deploy/base/build-base.sh`` (debootstrap from the mirror apt uses, then
  ``docker import``); reused when it exists;
- ``tradeflow-job``: one image for every job (the Dockerfile; base + the kafka extra);
  ``tradeflow-job-fluss`` (plus the fluss extra) and ``tradeflow-tools`` (plus the
  report and console stack: ``tradeflow demo``, ``feed``, ``report``, ``console``);
- ``tradeflow-jre:bookworm``: the base with Debian's headless JRE 17;
- ``tradeflow-kafka``, ``tradeflow-fluss`` and ``tradeflow-venue``: Kafka (KRaft), the
  Fluss servers (ZooKeeper, coordinator and tablet server: one image, the role is the
  command's argument, deploy/compose-fluss.yaml) and the QuickFIX/J venue, their jars
  resolved from deploy/<server>/pom.xml by the same ``resolve_classpath`` the tests'
  launchers use, started by deploy/<server>/run.sh.

Where a TLS-intercepting proxy sits between the build and the package index, the CA
bundle (``--pip-cert``, default the one pip is configured with) is handed to the pip
runs as a BuildKit secret, never stored in a layer. Each build prints its image's size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tradeflow.infra.common import DEPLOY_DIR, InfraError, resolve_classpath

ROOT = DEPLOY_DIR.parent
BASE = "tradeflow-base:bookworm"
JRE = "tradeflow-jre:bookworm"


@dataclass(frozen=True)
class Built:
    """An image built: its tag, size and how long the build took."""

    tag: str
    mb: float
    seconds: float


def docker() -> str:
    """Return the docker client (the engine's own, /usr/bin/docker, when present)."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise InfraError("no docker client: install Debian's docker.io and start dockerd")


def _run(args: Sequence[str], *, quiet: bool = True) -> str:
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    proc = subprocess.run(  # noqa: S603 - docker with our own arguments
        list(args), capture_output=quiet, text=True, check=False, env=env
    )
    if proc.returncode != 0:
        tail = (proc.stdout or "")[-3000:] + (proc.stderr or "")[-3000:]
        raise InfraError(f"{' '.join(args[:3])} ... failed ({proc.returncode}):\n{tail}")
    return proc.stdout or ""


def size_mb(tag: str) -> float:
    """Return an image's size in MB (10^6 bytes, as ``docker images`` shows)."""
    return int(_run([docker(), "image", "inspect", "-f", "{{.Size}}", tag]).strip()) / 1e6


def exists(tag: str) -> bool:
    """Tell whether the engine holds an image ``tag``."""
    return subprocess.run(  # noqa: S603
        [docker(), "image", "inspect", tag], capture_output=True, check=False
    ).returncode == 0


def default_pip_cert() -> Path | None:
    """Return the CA bundle pip uses here (PIP_CERT or the system's), if any."""
    for candidate in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build(
    tag: str, context: Path, *, dockerfile: Path | None = None, args: dict[str, str] | None = None,
    pip_cert: Path | None = None, no_cache: bool = False,
) -> Built:
    """``docker build`` one image; return its size and build time."""
    cmd = [docker(), "build", "-q", "-t", tag, *(["--no-cache"] if no_cache else [])]
    if dockerfile is not None:
        cmd += ["-f", str(dockerfile)]
    for key, value in (args or {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    if pip_cert is not None:
        cmd += ["--secret", f"id=pip_cert,src={pip_cert}"]
    started = time.monotonic()
    _run([*cmd, str(context)])
    built = Built(tag, round(size_mb(tag), 1), round(time.monotonic() - started, 1))
    print(f"image {tag}: {built.mb:.0f} MB, built in {built.seconds:.0f} s", flush=True)
    return built


def build_base() -> Built:
    """Make ``tradeflow-base`` with debootstrap (kept when it exists)."""
    started = time.monotonic()
    subprocess.run(["bash", str(DEPLOY_DIR / "base" / "build-base.sh"), BASE], check=True)  # noqa: S603, S607
    return Built(BASE, round(size_mb(BASE), 1), round(time.monotonic() - started, 1))


def _server(
    tag: str, name: str, conf: Sequence[Path], *, compile_sources: bool = False, no_cache: bool = False
) -> Built:
    """Stage a server's jars, config and run.sh, then build it on the JRE image."""
    lib = resolve_classpath(name, compile_sources=compile_sources)
    with tempfile.TemporaryDirectory(prefix=f"tradeflow-image-{name}-") as tmp:
        ctx = Path(tmp)
        shutil.copytree(lib, ctx / "lib", ignore=shutil.ignore_patterns(".complete"))
        (ctx / "conf").mkdir()
        for path in conf:
            shutil.copy2(path, ctx / "conf" / path.name)
        shutil.copy2(DEPLOY_DIR / name / "run.sh", ctx / "run.sh")
        return build(tag, ctx, dockerfile=DEPLOY_DIR / "servers" / "Dockerfile", args={"JRE": JRE},
                     no_cache=no_cache)


JOB_IMAGES = {
    "tradeflow-job": "requirements-job-kafka.lock",
    "tradeflow-job-fluss": "requirements-job.lock",
    "tradeflow-tools": "requirements-tools.lock",
}
SERVER_IMAGES = {  # tag: (deploy/<name>, its config files copied to /opt/server/conf)
    "tradeflow-kafka": ("kafka", ("log4j2.xml",)),
    "tradeflow-fluss": ("fluss", ("log4j2.properties",)),
    "tradeflow-venue": ("fix-venue", ("venue.cfg",)),
}


def build_all(
    *, pip_cert: Path | None = None, only: Sequence[str] = (), no_cache: bool = False
) -> dict[str, Built]:
    """Build the base (if missing) and every image (or those in ``only``); return them by tag.

    ``no_cache``: build every layer again (the base image is still reused).
    """
    out = {BASE: build_base()}
    wanted = set(only) or {*JOB_IMAGES, *SERVER_IMAGES}
    for tag, lock in JOB_IMAGES.items():
        if tag in wanted:
            out[tag] = build(tag, ROOT, args={"BASE": BASE, "LOCK": lock}, pip_cert=pip_cert,
                             no_cache=no_cache)
    if wanted & set(SERVER_IMAGES):
        out[JRE] = build(JRE, DEPLOY_DIR / "servers", dockerfile=DEPLOY_DIR / "servers" / "Dockerfile.jre",
                         args={"BASE": BASE}, no_cache=no_cache)
    for tag, (name, conf) in SERVER_IMAGES.items():
        if tag in wanted:
            out[tag] = _server(tag, name, [DEPLOY_DIR / name / c for c in conf],
                               compile_sources=name == "fix-venue", no_cache=no_cache)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tradeflow.infra.images build [--only TAG ...] [--pip-cert FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m tradeflow.infra.images", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the base (if missing) and the images")
    b.add_argument("--only", nargs="*", default=[], help="build only these tags (and what they need)")
    b.add_argument("--pip-cert", type=Path, default=default_pip_cert(),
                   help="CA bundle for pip inside the build (a BuildKit secret; default: pip's own)")
    args = parser.parse_args(argv)
    try:
        built = build_all(pip_cert=args.pip_cert, only=args.only)
    except (InfraError, subprocess.CalledProcessError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({tag: {"mb": b.mb, "s": b.seconds} for tag, b in built.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
