"""`clickguard setup`: fetch JVM jars with Maven and make sure PostgreSQL's server is installed.

Idempotent: each step leaves a stamp holding the hash of its inputs and is skipped when the stamp
matches, so a second run does nothing and says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from clickguard.jars import POM, PROFILES, jar_dir
from clickguard.settings import Settings
from clickguard_stack.nodes import find_pg_bin


def _stamp_ok(stamp: Path, digest: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == digest


def fetch_jars(settings: Settings, echo: Callable[[str], None] = print) -> bool:
    """Copy each Maven profile's dependencies into the jar cache. Returns True if work was done."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    did = False
    for profile in PROFILES:
        out = jar_dir(settings, profile)
        stamp = out / ".stamp"
        if _stamp_ok(stamp, digest):
            continue
        if shutil.which("mvn") is None:
            raise SystemExit("Maven (`mvn`) is required to fetch jars: apt-get install maven")
        echo(f"  fetching {profile} jars with Maven into {out} ...")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), f"-P{profile}", "dependency:copy-dependencies",
             f"-DoutputDirectory={out}", "-DexcludeScope=provided"],
            check=True,
        )
        if profile == "registry":
            (archive,) = out.glob("*.tar.gz")
            with tarfile.open(archive) as tar:
                tar.extractall(out / "app", filter="data")
            archive.unlink()
        stamp.write_text(digest)
        did = True
    return did


def ensure_postgres(settings: Settings, echo: Callable[[str], None] = print) -> bool:
    """Install Debian's `postgresql` package when the server binaries are missing."""
    if find_pg_bin(settings):
        return False
    if os.geteuid() != 0:
        raise SystemExit(
            "PostgreSQL server binaries (initdb, pg_ctl) are missing. Install them with\n"
            "  sudo apt-get install -y postgresql\n"
            "or point CLICKGUARD_PG_BIN_DIR at a folder that holds them, then rerun `make setup`."
        )
    echo("  installing PostgreSQL from Debian packages ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
        check=True, env=env,
    )
    return True


def ensure_kcat(echo: Callable[[str], None] = print) -> bool:
    """kcat is only used as the benchmark baseline; install it when root, else just say so."""
    if shutil.which("kcat"):
        return False
    if os.geteuid() != 0:
        echo("  note: kcat not installed (only needed by `clickguard bench producer`)")
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "kcat"], env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "kcat"], check=True, env=env)
    return True


def run_setup(settings: Settings, echo: Callable[[str], None] = print) -> None:
    did = ensure_postgres(settings, echo)
    did |= fetch_jars(settings, echo)
    did |= ensure_kcat(echo)
    if not shutil.which("java"):
        raise SystemExit("Java 17+ is required: apt-get install openjdk-17-jre-headless")
    echo("setup: done" if did else "setup: nothing to do, everything is already in place")
