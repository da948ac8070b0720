"""Webhooks and Apprise in every recipe, turned on as its README says (issue 18, item 4).

For each recipe (cron, systemd, container, Kubernetes) the test makes the files as the
README's events block says (`events secret` for the signing secret, the others typed in),
uncomments the recipe's own commented-out lines in a copy (crontab, units, manifests,
secrets block), then runs the recipe's refresh the way the recipe's test runs it, against
the loopback TikTok stand-in with one account TikTok rejects. A real receiver on loopback
is the webhook URL (it verifies the Standard Webhooks signature with the `standardwebhooks`
package) and, through Apprise's `json://`, the notify URL. The paths are moved as the
recipe's own test moves them; the TikTok endpoint is the only variable added.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import test_deploy
from conftest import PostgresServer
from helpers import import_line
from receiver import Receiver, running_receiver
from standin import TikTokStandIn
from test_deploy import Unit, parse_unit
from test_deploy import values as values  # a fixture
from test_recipes_container import (
    CONTAINER,
    IMAGE_UID,
    SETPRIV,
    block,
    docker_run,
    docker_runs,
    instructions,
    moved,
    prepare_secrets,
    run_container,
)
from test_recipes_container import (
    _remove_the_folders_made as _remove_the_folders_made,  # the fixture that cleans up
)
from test_recipes_cron import (
    VENV_BIN,
    Install,
    cron_environment,
    crontab_jobs,
    generate_key,
    home,  # noqa: F401 (a fixture)
    run_admin,
    run_job,
    step_2,
)
from test_recipes_systemd import (
    README as SYSTEMD_README,
)
from test_recipes_systemd import (
    TOKENREFRESH,
    Admin,
    Host,
    assert_admin_has_the_units_configuration,
)
from tokenrefresh.base.settings import Settings
from tokenrefresh.cli import app

ROOT = Path(__file__).resolve().parent.parent
OPEN_ID = "creator-rejected"
# The commented-out lines of the events, in each recipe's own comment style.
CRON_LINES = re.compile(r"#\s?(TOKENREFRESH_(WEBHOOK|NOTIFY)_\w+_FILE=.*|.*tokenrefresh events .*)")
UNIT_LINES = re.compile(r"#((LoadCredential|Environment)=\S*(webhook|notify|WEBHOOK|NOTIFY).*)")
YAML_LINES = re.compile(
    r"(\s*)# ((?=.*(?:webhook|notify|WEBHOOK|NOTIFY))"
    r"\s*(?:- )?(?:name|value|key|path|webhook-url|webhook-secret|notify-urls): .*)"
)
CONTAINER_LINES = re.compile(r"#(.*(webhook|notify)-.*)")


def uncommented(text: str, pattern: re.Pattern[str]) -> str:
    """`text` with the lines `pattern` matches uncommented: its groups without the `#`."""
    lines = []
    for line in text.splitlines(keepends=True):
        match = pattern.fullmatch(line.rstrip("\n"))
        if match:
            indent = match.group(1) if pattern is YAML_LINES else ""
            line = indent + match.group(2 if pattern is YAML_LINES else 1) + "\n"
        lines.append(line)
    changed = "".join(lines)
    assert changed != text, "nothing to uncomment"
    return changed


def readme_block(readme: Path, marker: str) -> list[str]:
    text = readme.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert match, f"{readme} has no <!-- {marker} --> block"
    return match.group(1).replace("\\\n", " ").splitlines()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The webhook receiver; its secret is the one `events secret` made, set once made."""
    with running_receiver("") as running:
        yield running


def notify_url(receiver: Receiver) -> str:
    return f"json://127.0.0.1:{receiver.port}/notify"


def answers(receiver: Receiver) -> dict[str, str]:
    """What an operator types into each file."""
    return {"webhook-url": receiver.url + "\n", "notify-urls": notify_url(receiver) + "\n"}


@pytest.fixture
def standin_for() -> Iterator[Callable[[str, str], TikTokStandIn]]:
    """The stand-in, started for the recipe's client credentials; stopped after the test."""
    started: list[TikTokStandIn] = []

    def start(client_key: str, client_secret: str) -> TikTokStandIn:
        started.append(TikTokStandIn(client_key=client_key, client_secret=client_secret))
        return started[-1].start()

    yield start
    for standin in started:
        standin.stop()


def rejected_account(standin: TikTokStandIn) -> str:
    """One due account (an import line) whose refresh token TikTok will reject."""
    line = import_line(standin.issue(OPEN_ID), expires_in=600)
    standin.revoke(OPEN_ID)
    return line


def assert_files_private(folder: Path) -> None:
    for name in ("webhook-url", "webhook-secret", "notify-urls"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name


def assert_settings(environment: Mapping[str, str], receiver: Receiver) -> None:
    """The recipe's variables give the webhook and the Apprise URL, from the files."""
    settings = Settings.from_env(environment)
    assert settings.webhook_url is not None
    assert settings.webhook_secret is not None
    assert settings.notify_urls is not None
    assert settings.webhook_url.reveal() == receiver.url
    assert settings.webhook_secret.reveal() == receiver.secret
    assert settings.notify_urls.reveal() == notify_url(receiver)


def assert_delivered(receiver: Receiver) -> None:
    """One signed account.expired webhook, and one Apprise digest naming the account."""
    got = receiver.wait_for(2, seconds=10)
    webhooks = [item for item in got if item.path == "/hooks/events"]
    digests = [item for item in got if item.path == "/notify"]
    assert len(webhooks) == 1, got
    assert webhooks[0].verified, "signed with the secret of the file"
    event = json.loads(webhooks[0].body)
    assert (event["type"], event["data"]["open_id"]) == ("account.expired", OPEN_ID)
    assert len(digests) == 1, got
    message = json.loads(digests[0].body)
    assert "1 account needs its user to reconnect" in message["title"]
    assert OPEN_ID in message["message"]


# ----------------------------------------------------------------------------- cron


@pytest.mark.usefixtures("home")
def test_cron_events_as_the_readme_says(
    tmp_path: Path, receiver: Receiver, standin_for: Callable[[str, str], TikTokStandIn]
) -> None:
    install = Install(tmp_path, VENV_BIN)
    step_2(install, Path.home(), TOKENREFRESH_ENCRYPTION_KEYS=generate_key())
    standin = standin_for("cron-recipe-client-key", "cron-recipe-client-secret")
    typed = answers(receiver)
    steps = readme_block(ROOT / "docs" / "deployment.md", "cron:events")
    assert any("pip install '.[notify]'" in line for line in steps)
    assert importlib.util.find_spec("apprise"), "the notify extra (test extra) is installed"
    crontab = ""
    for line in steps:
        if line.startswith("(umask 077"):
            (name,) = re.findall(r"/etc/tokenrefresh/([\w-]+)\)$", line)
            subprocess.run(
                ["/bin/sh", "-c", install.moved(line)],
                input=typed.get(name, ""),
                env={"HOME": str(Path.home()), "PATH": "/usr/bin:/bin"},
                text=True,
                check=True,
                timeout=60,
            )
        elif line.startswith("crontab -e"):
            crontab = uncommented(install.crontab(sqlite=True), CRON_LINES)
            crontab += f"TIKTOK_API_BASE_URL={standin.base_url}\n"
            install.crontab_file.write_text(crontab)
    assert_files_private(install.etc)
    receiver.secret = (install.etc / "webhook-secret").read_text().strip()
    assert receiver.secret.startswith("whsec_")
    assert_settings(cron_environment(crontab), receiver)

    assert run_admin(install.crontab_file, "db", "upgrade", "-q").returncode == 0
    imported = run_admin(
        install.crontab_file, "accounts", "import", "-q", "-", stdin=rejected_account(standin)
    )
    assert imported.returncode == 0, imported.stderr
    jobs = crontab_jobs(crontab)
    assert set(jobs) == {"refresh", "cleanup", "events"}
    refresh = run_job(crontab, jobs["refresh"])
    assert refresh.returncode == 1, refresh.stderr
    assert_delivered(receiver)
    deliver = run_job(crontab, jobs["events"])
    assert (deliver.returncode, deliver.stdout, deliver.stderr) == (0, "", "")
    status = run_admin(install.crontab_file, "status", "--json")
    assert json.loads(status.stdout)["events"]["delivery_configured"] is True


# ----------------------------------------------------------------------------- systemd


def uncommented_units(folder: Path) -> dict[str, Unit]:
    """Both services with their events lines uncommented, as copies in `folder`."""
    units = {}
    for name in test_deploy.SERVICES:
        text = uncommented(Unit.load(name).text, UNIT_LINES)
        (folder / name).write_text(text)
        units[name] = Unit(name, text, parse_unit(text))
    return units


def test_systemd_events_as_the_readme_says(
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    standin_for: Callable[[str, str], TikTokStandIn],
) -> None:
    host = Host(tmp_path)
    host.write_secrets()
    standin = standin_for("systemd-recipe-client-key", "systemd-recipe-client-secret")
    typed = answers(receiver)
    for line in readme_block(SYSTEMD_README, "systemd-events"):
        if line.startswith("#"):
            continue
        if "pip install" in line:
            assert line.endswith("[notify]'"), line
            continue
        (name,) = re.findall(r"/etc/tokenrefresh/([\w-]+)'?$", line)
        command = line.replace("sudo ", "").replace("/etc/tokenrefresh", str(host.etc))
        command = command.replace("/opt/tokenrefresh/bin/tokenrefresh", str(TOKENREFRESH))
        subprocess.run(["/bin/sh", "-c", command], input=typed.get(name, ""), text=True, check=True)
    assert_files_private(host.etc)
    receiver.secret = (host.etc / "webhook-secret").read_text().strip()

    folder = tmp_path / "units"
    folder.mkdir()
    units = uncommented_units(folder)
    # The unit checks of test_deploy.py hold for the uncommented units too.
    monkeypatch.setattr(test_deploy, "SYSTEMD", folder)
    for name in units:
        test_deploy.test_service_gets_its_secrets_as_credentials_mapped_to_file_variables(name)
    added = [
        tuple(value.split("=", 1))
        for line in readme_block(SYSTEMD_README, "systemd-admin-events")
        for value in re.findall(r"-p (\S+)", line)
    ]
    base = Admin.from_readme()
    admin = Admin(base.properties + added, base.executable)
    refresh = units["tokenrefresh-refresh.service"]
    assert_admin_has_the_units_configuration(admin, refresh)
    cleanup = units["tokenrefresh-cleanup.service"]
    for key in ("webhook-url", "webhook-secret", "notify-urls"):
        assert cleanup.credentials()[key] == refresh.credentials()[key]

    assert host.admin(admin, ["db", "upgrade", "--create", "-q"]).returncode == 0
    imported = host.admin(admin, ["accounts", "import", "-q", "-"], rejected_account(standin))
    assert imported.returncode == 0, imported.stderr
    tick = host.service(refresh, {"TIKTOK_API_BASE_URL": standin.base_url})
    assert tick.returncode == 1, tick.stderr
    assert_delivered(receiver)
    status = host.admin(admin, ["status", "--json"])
    assert json.loads(status.stdout)["events"]["delivery_configured"] is True


# ----------------------------------------------------------------------------- Kubernetes


def test_kubernetes_events_as_the_readme_says(
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, str],
    standin_for: Callable[[str, str], TikTokStandIn],
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    editor = tmp_path / "editor"
    editor.write_text('#!/bin/sh\ncat > "$1"\n')
    editor.chmod(0o755)
    typed = answers(receiver)
    steps = readme_block(ROOT / "deploy" / "kubernetes" / "README.md", "kubernetes-events")
    for line in steps:
        if line.startswith("(umask 077"):
            (name,) = re.findall(r'"\$secrets/([\w-]+)"\)$', line)
            subprocess.run(
                ["/bin/sh", "-c", line],
                input=typed.get(name, ""),
                env={
                    "PATH": f"{VENV_BIN}:/usr/bin:/bin",
                    "secrets": str(secrets),
                    "EDITOR": str(editor),
                },
                text=True,
                check=True,
            )
    assert_files_private(secrets)
    receiver.secret = (secrets / "webhook-secret").read_text().strip()
    (create,) = [line for line in steps if "create secret generic" in line]
    from_files = set(re.findall(r"--from-file=([\w-]+)=", create))

    # The manifests with their events lines uncommented; test_deploy.py's checks hold.
    folder = tmp_path / "kubernetes"
    folder.mkdir()
    for path in test_deploy.KUBERNETES.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        if "webhook" in text:
            text = uncommented(text, YAML_LINES)
        (folder / path.name).write_text(text)
    monkeypatch.setattr(test_deploy, "KUBERNETES", folder)
    assert set(test_deploy.the_secret()["stringData"]) == from_files
    test_deploy.test_secret_is_a_marked_placeholder_for_postgresql()
    documents = [*test_deploy.workloads(), test_deploy.sharded_cronjob()]
    for document in documents:
        test_deploy.test_secrets_reach_the_pod_only_as_files(document)
        test_deploy.test_manifests_use_only_known_fields(document)
    for document in [d for d in documents if d["kind"] == "CronJob" or "admin" in str(d)]:
        names = {v["name"] for v in test_deploy.pod_spec(document)["containers"][0]["env"]}
        assert {"TOKENREFRESH_WEBHOOK_URL_FILE", "TOKENREFRESH_NOTIFY_URLS_FILE"} <= names

    values |= {
        name: (secrets / file).read_text().strip()
        for name, file in (
            ("TOKENREFRESH_WEBHOOK_URL", "webhook-url"),
            ("TOKENREFRESH_WEBHOOK_SECRET", "webhook-secret"),
            ("TOKENREFRESH_NOTIFY_URLS", "notify-urls"),
        )
    }
    standin = standin_for(values["TIKTOK_CLIENT_KEY"], values["TIKTOK_CLIENT_SECRET"])
    refresh = test_deploy.cronjobs()["refresh"]
    environment = test_deploy.kubernetes_environment(refresh, values, tmp_path)
    assert_settings(environment, receiver)
    environment["TIKTOK_API_BASE_URL"] = standin.base_url
    database = Path(values["TOKENREFRESH_DATABASE_URL"].removeprefix("sqlite:///"))
    database.parent.mkdir()

    def run(*argv: str, stdin: str | None = None) -> Any:
        return CliRunner().invoke(app, list(argv), env=environment, input=stdin)

    assert run("db", "upgrade", "--create", "-q").exit_code == 0
    assert run("accounts", "import", "-q", "-", stdin=rejected_account(standin)).exit_code == 0
    (container,) = test_deploy.pod_spec(refresh)["containers"]
    assert run(*container["args"]).exit_code == 1
    assert_delivered(receiver)


# ----------------------------------------------------------------------------- container


@pytest.mark.slow
@pytest.mark.skipif(SETPRIV is None or os.geteuid() != 0, reason="needs root and setpriv")
def test_container_events_as_the_readme_says(
    image_root: Path,
    postgres_server: PostgresServer,
    receiver: Receiver,
    standin_for: Callable[[str, str], TikTokStandIn],
) -> None:
    """The secrets block with its events lines uncommented, then the events `docker run`
    block's refresh as uid 10001, in the image's Python (which has Apprise)."""
    installs = [rest for keyword, rest in instructions() if keyword == "RUN" and "pip" in rest]
    assert any(rest.endswith('"$1[notify]"') for rest in installs), "the image has Apprise"
    typed = answers(receiver)
    name = postgres_server.empty_database()
    try:
        url = postgres_server.url(name).render_as_string(hide_password=False)
        here = prepare_secrets(
            image_root,
            url,
            edit=lambda script: uncommented(script, CONTAINER_LINES),
            answers="check-client-key\ncheck-client-secret\n"
            + typed["webhook-url"]
            + typed["notify-urls"],
        )
        secrets = here / "secrets"
        for file in ("webhook-url", "webhook-secret", "notify-urls"):
            status = (secrets / file).stat()
            assert (status.st_uid, status.st_mode & 0o777) == (IMAGE_UID, 0o600), file
        receiver.secret = (secrets / "webhook-secret").read_text().strip()

        (line,) = docker_runs(block(CONTAINER / "README.md", "container-run-events"))
        (plain,) = docker_runs(block(CONTAINER / "README.md", "container-run"))
        events_options, plain_options = docker_run(line)[:3], docker_run(plain)[:3]
        for mine, theirs in zip(events_options, plain_options, strict=True):
            assert set(theirs) <= set(mine), "the run block's options, and the events ones"
        variables = dict(v.split("=", 1) for v in docker_run(line)[1])
        mounted = {v.split(":")[1]: here / "secrets" for v in docker_run(line)[0]}
        assert_settings({k: moved(v, mounted) for k, v in variables.items()}, receiver)

        standin = standin_for("check-client-key", "check-client-secret")
        run_container(image_root, plain, here)  # db upgrade
        imported = CliRunner().invoke(
            app,
            ["accounts", "import", "-q", "-"],
            input=rejected_account(standin),
            env={
                "TOKENREFRESH_DATABASE_URL": url,
                "TOKENREFRESH_ENCRYPTION_KEYS": (secrets / "encryption-keys").read_text(),
            },
        )
        assert imported.exit_code == 0, imported.output
        (refresh,), _ = run_container(
            image_root, line, here, exit_code=1, extra={"TIKTOK_API_BASE_URL": standin.base_url}
        )
        assert "chmod" not in refresh.stderr
        assert_delivered(receiver)
    finally:
        postgres_server.drop(name)
