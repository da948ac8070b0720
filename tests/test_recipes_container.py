"""The container and Kubernetes recipes, run the way they run: as uid 10001.

deploy/container/README.md's secrets block is run as written (its `docker run ... keys
generate` by the installed CLI, its `sudo` by us, root), then the image's entrypoint
(read from the Containerfile) with each `docker run` block's options, under
`setpriv --reuid=10001 --regid=10001 --clear-groups`, on the prepared folder. The
Kubernetes admin pod's `kubectl exec` commands run with its environment, as its user with
its fsGroup, on its Secret files as the kubelet mounts them (root-owned, 0440, that group).

uid 10001 must reach the CLI: a virtualenv under /root or a 0700 temp dir is out of its
reach, so the module installs the project into one of its own in a world-readable folder,
from a Python uid 10001 can run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect

from conftest import PostgresServer
from helpers import import_line
from standin import TikTokStandIn
from test_deploy import admin_job, pod_spec

ROOT = Path(__file__).resolve().parent.parent
CONTAINER = ROOT / "deploy" / "container"
KUBERNETES_README = ROOT / "deploy" / "kubernetes" / "README.md"
SETPRIV = shutil.which("setpriv")
IMAGE_UID = 10001
AS_IMAGE_USER = [f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="running as uid 10001 needs root"),
]


def block(readme: Path, marker: str) -> str:
    """The sh block after `<!-- marker -->`."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)```", text, re.S)
    assert match, f"{readme} has no <!-- {marker} --> block"
    return match.group(1)


def instructions() -> list[tuple[str, str]]:
    """The Containerfile's final stage: (KEYWORD, rest), continuation lines joined."""
    text = (CONTAINER / "Containerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n\s*(#.*\n\s*)*", " ", text)
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    last_from = max(i for i, (keyword, _) in enumerate(found) if keyword == "FROM")
    return found[last_from:]


def entrypoint() -> list[str]:
    (value,) = [json.loads(rest) for keyword, rest in instructions() if keyword == "ENTRYPOINT"]
    return list(value)


def moved(value: str, places: Mapping[str, Path]) -> str:
    """The image's absolute paths moved to their folders here, in one pass (a moved path
    may itself start with one of them, /tmp)."""
    inside = "|".join(re.escape(path) for path in sorted(places, key=len, reverse=True))
    pattern = rf"(?<![\w/])({inside})(?=/|:|$)"
    return re.sub(pattern, lambda match: str(places[match.group(1)]), value)


def image_environment(places: Mapping[str, Path]) -> dict[str, str]:
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for keyword, rest in instructions():
        if keyword == "ENV":
            for assignment in shlex.split(rest):
                name, _, value = assignment.partition("=")
                value = value.replace("$PATH", environment["PATH"])
                environment[name] = moved(value, places)
    return environment


_MADE: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_the_folders_made() -> Iterator[None]:
    yield
    while _MADE:
        shutil.rmtree(_MADE.pop())


def private_dir(owner: int, mode: int) -> Path:
    """A folder of its own, in a world-readable temporary one (removed after the test)."""
    path = Path(tempfile.mkdtemp(prefix="tokenrefresh-recipe-", dir=REACHABLE))
    _MADE.append(path)
    os.chown(path, owner, owner)
    path.chmod(mode)
    return path


def as_user(argv: list[str], env: Mapping[str, str], ids: list[str], **kwargs: Any) -> Any:
    assert SETPRIV
    return subprocess.run(
        [SETPRIV, *ids, *argv],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
        **kwargs,
    )


# Not tempfile.gettempdir(): the tests get a TMPDIR of their own, out of uid 10001's reach.
REACHABLE = Path("/tmp")  # noqa: S108 (mkdtemp folders in it, then chmod/chown)


def build_image_root() -> Path:
    """A world-readable folder with the project installed in opt/tokenrefresh (the image's
    /opt/tokenrefresh), from a Python that uid 10001 can run. The caller removes it
    (conftest's image_root, at the end of the run)."""
    root = Path(tempfile.mkdtemp(prefix="tokenrefresh-image-", dir=REACHABLE))
    root.chmod(0o755)
    candidates = [os.path.realpath(sys._base_executable), "/usr/bin/python3"]
    usable = [
        python
        for python in dict.fromkeys(candidates)
        if Path(python).exists()
        and as_user([python, "-c", "pass"], {}, AS_IMAGE_USER).returncode == 0
    ]
    assert usable, f"none of {candidates} can be run by uid {IMAGE_UID}"
    context = root / "context"
    for name in ("pyproject.toml", "README.md"):
        context.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "src", context / "src")
    venv = root / "opt" / "tokenrefresh"
    umask = os.umask(0o022)  # as an image's build: what root installs, all can read
    try:
        subprocess.run([usable[0], "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        # As the Containerfile: the wheel with the notify extra (Apprise).
        subprocess.run([*pip, "--disable-pip-version-check", f"{context}[notify]"], check=True)
    finally:
        os.umask(umask)
    return root


def docker_runs(text: str) -> list[str]:
    """The `docker run` commands of a block, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.startswith("docker run ")]


def docker_run(line: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """A `docker run` command's -v and -e values, its --tmpfs folders, and its arguments
    after the image."""
    words = shlex.split(line, comments=True)
    assert words[:2] == ["docker", "run"], line
    volumes, variables, tmpfs = [], [], []
    position = 2
    while words[position].startswith("-"):
        option = words[position]
        if option in ("-v", "-e", "--tmpfs"):
            {"-v": volumes, "-e": variables, "--tmpfs": tmpfs}[option].append(words[position + 1])
            position += 2
        else:
            assert option in ("--rm", "--read-only", "-i"), option
            position += 1
    assert words[position] == "tokenrefresh:0.2.0"
    return volumes, variables, tmpfs, words[position + 1 :]


def run_container(
    image_root: Path,
    line: str,
    here: Path,
    *commands: list[str],
    exit_code: int = 0,
    extra: Mapping[str, str] | None = None,
) -> tuple[list[Any], dict[str, Path]]:
    """The `docker run` line's container, once per command (its own arguments first), as
    uid 10001: its volumes, its variables, the image's ENV, all paths moved here. The
    line's own command must exit `exit_code`, the others 0; `extra`: a test's variables."""
    volumes, variables, tmpfs, arguments = docker_run(line)
    # The image's VOLUME /data is 10001's, 0700 (a named volume, or an anonymous one);
    # a tmpfs is 1777.
    places = {"/opt/tokenrefresh": image_root / "opt" / "tokenrefresh"}
    places["/data"] = private_dir(IMAGE_UID, 0o700)
    for folder in tmpfs:
        places[folder] = private_dir(0, 0o1777)
    for volume in volumes:
        source, inside, *_ = volume.split(":")
        if source.startswith("$PWD/"):
            places[inside] = here / source.removeprefix("$PWD/")
        else:  # a named volume takes the ownership of the image's folder
            places[inside] = places.get(inside) or private_dir(IMAGE_UID, 0o700)
    environment = image_environment(places)
    for variable in variables:
        name, _, value = variable.partition("=")
        environment[name] = moved(value, places)
    environment |= extra or {}
    results = []
    for command in (arguments, *commands):
        result = as_user([*entrypoint(), *command], environment, AS_IMAGE_USER)
        expected = exit_code if command is arguments else 0
        assert result.returncode == expected, (command, result.stderr)
        assert "chmod" not in result.stderr
        results.append(result)
    return results, places


def prepare_secrets(
    image_root: Path,
    database_url: str,
    edit: Callable[[str], str] = str,
    answers: str = "check-client-key\ncheck-client-secret\n",
) -> Path:
    """The README's secrets block, run as written in a fresh folder (umask 022 before it);
    `edit` (uncommenting lines, say) first, `answers` typed at its prompts."""
    script = edit(block(CONTAINER / "README.md", "container-secrets"))
    replacements = {
        "docker run --rm tokenrefresh:0.2.0 ": "tokenrefresh ",
        "sudo ": "",
        "'postgresql://tokenrefresh@db.internal/tokenrefresh'": shlex.quote(database_url),
    }
    for old, new in replacements.items():
        assert old in script, f"the secrets block no longer has {old!r}"
        script = script.replace(old, new)
    here = private_dir(0, 0o755)
    bin_folder = image_root / "opt" / "tokenrefresh" / "bin"
    umask = os.umask(0o022)
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            input=answers,
            env={"PATH": f"{bin_folder}:/usr/bin:/bin", "HOME": str(here), "LANG": "C.UTF-8"},
            cwd=here,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.umask(umask)
    assert result.returncode == 0, result.stderr
    return here


def test_the_container_recipe_runs_as_uid_10001_on_the_prepared_secrets(
    image_root: Path, postgres_server: PostgresServer
) -> None:
    name = postgres_server.empty_database()
    try:
        url = postgres_server.url(name).render_as_string(hide_password=False)
        here = prepare_secrets(image_root, url)
        secrets = here / "secrets"
        folder = secrets.stat()
        assert (folder.st_uid, folder.st_gid, stat.S_IMODE(folder.st_mode)) == (10001, 10001, 0o700)
        for path in secrets.iterdir():
            status = path.stat()
            assert (status.st_uid, stat.S_IMODE(status.st_mode)) == (10001, 0o600), path
        assert (secrets / "client-key").read_text() == "check-client-key\n"
        assert (secrets / "client-secret").read_text() == "check-client-secret\n"
        Fernet((secrets / "encryption-keys").read_text().strip())  # a working key

        (line,) = docker_runs(block(CONTAINER / "README.md", "container-run"))
        (_, refresh, status_), _ = run_container(
            image_root, line, here, ["refresh", "-q"], ["status"]
        )
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            assert "accounts" in inspect(engine).get_table_names(), "db upgrade made the schema"
        finally:
            engine.dispose()
        assert refresh.stdout == ""
        assert "Accounts" in status_.stdout or "accounts" in status_.stdout

        # SQLite: the default in the /data volume, created on first use.
        (line,) = docker_runs(block(CONTAINER / "README.md", "container-run-sqlite"))
        _, places = run_container(image_root, line, here)
        database = (places["/data"] / "tokenrefresh" / "tokenrefresh.db").stat()
        assert (database.st_uid, stat.S_IMODE(database.st_mode)) == (IMAGE_UID, 0o600)
    finally:
        postgres_server.drop(name)


def admin_commands() -> list[tuple[list[str], str | None]]:
    """The README's `kubectl exec` commands in the admin pod: (argv, stdin file or None)."""
    commands = []
    for line in block(KUBERNETES_README, "kubernetes-admin").splitlines():
        words = shlex.split(line, comments=True)
        if "exec" in words:
            argv = words[words.index("--") + 1 :]
            stdin = argv[argv.index("<") + 1] if "<" in argv else None
            commands.append((argv[: argv.index("<")] if stdin else argv, stdin))
    return commands


def test_the_kubernetes_admin_pod_runs_the_readme_commands_as_its_user(
    image_root: Path, standin: TikTokStandIn
) -> None:
    """As the kubelet runs it: the pod's user and group, fsGroup among its groups, the
    Secret's files root-owned with group read added for fsGroup; no chmod warning."""
    document = admin_job()
    pod = pod_spec(document)
    context = pod["securityContext"]
    user, group, fs_group = context["runAsUser"], context["runAsGroup"], context["fsGroup"]
    ids = [f"--reuid={user}", f"--regid={group}", f"--groups={fs_group}"]
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    database_folder = private_dir(user, 0o700)
    values = {
        "database-url": f"sqlite:///{database_folder}/tokenrefresh.db",
        "encryption-keys": Fernet.generate_key().decode("ascii"),
        "client-key": "admin-client-key",
        "client-secret": "admin-client-secret",
    }
    mounted = private_dir(0, 0o755)
    for item in volume["secret"]["items"]:
        path = mounted / item["path"]
        path.write_text(values[item["key"]], encoding="utf-8")
        os.chown(path, 0, fs_group)
        path.chmod(volume["secret"]["defaultMode"] | stat.S_IRGRP)
    places = {
        "/opt/tokenrefresh": image_root / "opt" / "tokenrefresh",
        "/data": private_dir(user, 0o700),
        "/tmp": private_dir(0, 0o1777),  # noqa: S108 (the image's path: an emptyDir)
        mount["mountPath"]: mounted,
    }
    environment = image_environment(places)
    for variable in container["env"]:
        environment[variable["name"]] = moved(variable["value"], places)
    assert str(PurePosixPath(environment["TOKENREFRESH_DATABASE_URL_FILE"]).parent) == str(mounted)
    # The schema first, as db-upgrade-job.yaml makes it (here a SQLite file, so --create).
    upgrade = as_user(["tokenrefresh", "db", "upgrade", "--create", "-q"], environment, ids)
    assert upgrade.returncode == 0, upgrade.stderr

    commands = admin_commands()
    assert [argv[:3] for argv, _ in commands] == [
        ["tokenrefresh", "accounts", "import"],
        ["tokenrefresh", "accounts", "list"],
        ["tokenrefresh", "status"],
        ["tokenrefresh", "keys", "check"],
    ]
    tokens = standin.issue("creator-admin")
    for argv, stdin in commands:
        assert stdin is None or stdin.startswith("$HOME/"), "an absolute path, not ./"
        result = as_user(argv, environment, ids, input=import_line(tokens) if stdin else None)
        assert result.returncode == 0, (argv, result.stderr)
        assert "chmod" not in result.stderr, result.stderr
        assert tokens.refresh_token not in result.stdout + result.stderr
    with sqlite3.connect(database_folder / "tokenrefresh.db") as connection:
        (open_ids,) = connection.execute("SELECT group_concat(open_id) FROM accounts").fetchone()
    assert open_ids == "creator-admin"
