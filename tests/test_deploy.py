"""The deployment recipes in deploy/: systemd units and timers, Kubernetes manifests.

Each recipe is parsed and checked for the settings that matter (the command, the exit code
75 that is no failure, time limits above --max-runtime, secrets only as files, hardening).
Then the command of each recipe is run in-process, with the recipe's own arguments and
environment, its secret files written to a temporary directory: so a recipe cannot name an
option, a command or a *_FILE variable that tokenrefresh does not know. Those runs use a
temporary SQLite file; no server is needed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import typer
import yaml
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from standin import TikTokStandIn
from tokenrefresh.base import settings as config
from tokenrefresh.base.settings import Settings
from tokenrefresh.cli import app
from tokenrefresh.storage.engine import default_database_path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "deploy" / "systemd"
KUBERNETES = ROOT / "deploy" / "kubernetes"
CRONTAB = ROOT / "crontab.example"

SECRET_NAMES = (
    config.DATABASE_URL,
    config.ENCRYPTION_KEYS,
    config.CLIENT_KEY,
    config.CLIENT_SECRET,
    config.PING_URL,
    config.CLEANUP_PING_URL,
    config.WEBHOOK_URL,
    config.WEBHOOK_SECRET,
    config.NOTIFY_URLS,
)
CONFIG_PREFIXES = ("TOKENREFRESH_", "TIKTOK_")
SECRET_FILE_DIR = PurePosixPath("/etc/tokenrefresh")

SERVICES = {
    "tokenrefresh-refresh.service": ["refresh", "-q"],
    "tokenrefresh-cleanup.service": ["cleanup", "-q"],
}
TIMERS = {
    "tokenrefresh-refresh.timer": ("tokenrefresh-refresh.service", "*-*-* *:00/30:00"),
    "tokenrefresh-cleanup.timer": ("tokenrefresh-cleanup.service", "*-*-* 00/6:17:00"),
}
CRONJOB_ARGS = {"refresh": ["refresh", "-q"], "cleanup": ["cleanup", "-q"]}
OPTIONAL_ARGS = ["--log-format", "json"]

# What a secret looks like, should one ever be written into a recipe by mistake.
INLINE_SECRETS = (
    re.compile(r"[A-Za-z0-9_-]{43}="),  # a Fernet key
    re.compile(r"://[^\s/:@]+:[^\s/@]+@"),  # a URL with a password
    re.compile(r"hc-ping\.com/[0-9a-f-]{36}"),  # a healthchecks.io check
)
PLACEHOLDER = "REPLACE-ME"


def command_options(*words: str) -> dict[str, Any]:
    """The options of `tokenrefresh WORDS`, by each of their names, read from the command
    itself (names, env var, default), not from the text of its --help."""
    command: Any = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]
    return {
        name: param for param in command.params for name in [*param.opts, *param.secondary_opts]
    }


def refresh_default(name: str) -> Any:
    default = command_options("refresh")[name].default
    assert default is not None, f"{name} has no default"
    return default


def max_runtime_default() -> timedelta:
    default: timedelta = refresh_default("--max-runtime")
    return default


def assert_no_inline_secret(text: str, where: str) -> None:
    for line in text.splitlines():
        if PLACEHOLDER in line:
            continue
        for pattern in INLINE_SECRETS:
            assert not pattern.search(line), f"{where}: looks like a secret: {line.strip()}"


# ----------------------------------------------------------------------------- systemd


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: sections of keys, each with the list of its values in order.

    Keys may repeat (LoadCredential=, Environment=, ...) and then collect values; an empty
    assignment resets the list, as systemd does. `#` and `;` start comment lines; a line
    ending with a backslash continues on the next.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line[:1] in ("#", ";") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        entry = " ".join([*pending, line]).strip()
        pending = []
        if entry.startswith("[") and entry.endswith("]"):
            current = sections.setdefault(entry[1:-1], {})
            continue
        key, equals, value = entry.partition("=")
        if not equals or current is None or not key.strip():
            raise ValueError(f"line {number}: not a key=value in a section: {raw!r}")
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    if pending:
        raise ValueError("the file ends in a line continuation")
    return sections


@dataclass
class Unit:
    name: str
    text: str
    sections: dict[str, dict[str, list[str]]]

    @classmethod
    def load(cls, name: str) -> Unit:
        text = (SYSTEMD / name).read_text(encoding="utf-8")
        return cls(name, text, parse_unit(text))

    def values(self, section: str, key: str) -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def value(self, section: str, key: str) -> str:
        values = self.values(section, key)
        assert len(values) == 1, f"{self.name}: expected one {key}=, found {values}"
        return values[0]

    def words(self, section: str, key: str) -> list[str]:
        return [word for value in self.values(section, key) for word in value.split()]

    def environment(self) -> dict[str, str]:
        assignments = [
            word for value in self.values("Service", "Environment") for word in shlex.split(value)
        ]
        return dict(assignment.split("=", 1) for assignment in assignments)

    def credentials(self) -> dict[str, str]:
        return dict(value.split(":", 1) for value in self.values("Service", "LoadCredential"))


def expand(value: str, specifiers: Mapping[str, str]) -> str:
    """Resolve systemd specifiers (%d, %S, ...) like the service manager would."""

    def resolve(match: re.Match[str]) -> str:
        letter = match.group(1)
        if letter == "%":
            return "%"
        assert letter in specifiers, f"unexpected specifier %{letter} in {value!r}"
        return specifiers[letter]

    return re.sub(r"%(.)", resolve, value)


def timespan(text: str) -> timedelta:
    """A systemd time span: `90s`, `28min`, `1h 30min`, or plain seconds."""
    units = {
        "ms": 0.001,
        "s": 1,
        "sec": 1,
        "second": 1,
        "seconds": 1,
        "m": 60,
        "min": 60,
        "minute": 60,
        "minutes": 60,
        "h": 3600,
        "hr": 3600,
        "hour": 3600,
        "hours": 3600,
    }
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts, text
    assert "".join(f"{n}{u}" for n, u in parts) == re.sub(r"\s", "", text), text
    return timedelta(seconds=sum(float(number) * units[unit or "s"] for number, unit in parts))


def test_the_unit_parser_collects_repeated_keys_and_follows_systemd_rules() -> None:
    sections = parse_unit(
        "# comment\n[Service]\nEnvironment=A=1\n; another\nEnvironment=B=2 \\\n  C=3\n"
        "SystemCallFilter=@system-service\nSystemCallFilter=\nCapabilityBoundingSet=\n"
        "ExecStart=/bin/true\n[Install]\nWantedBy=timers.target\n"
    )
    assert sections == {
        "Service": {
            "Environment": ["A=1", "B=2 C=3"],
            "SystemCallFilter": [],
            "CapabilityBoundingSet": [],
            "ExecStart": ["/bin/true"],
        },
        "Install": {"WantedBy": ["timers.target"]},
    }
    with pytest.raises(ValueError, match="line 1"):
        parse_unit("Type=oneshot\n")
    assert timespan("28min") == timedelta(minutes=28)
    assert timespan("1h 30min") == timedelta(minutes=90)
    assert timespan("90") == timedelta(seconds=90)


@pytest.mark.parametrize(("name", "argv"), SERVICES.items(), ids=list(SERVICES))
def test_service_runs_the_command_as_a_oneshot(name: str, argv: list[str]) -> None:
    unit = Unit.load(name)
    assert unit.value("Service", "Type") == "oneshot"
    command = shlex.split(unit.value("Service", "ExecStart"))
    assert PurePosixPath(command[0]).is_absolute()
    assert PurePosixPath(command[0]).name == "tokenrefresh"
    assert command[1:] == argv
    assert "network-online.target" in unit.words("Unit", "After")
    assert not unit.values("Install", "WantedBy"), "started by its timer, not at boot"


@pytest.mark.parametrize("name", SERVICES)
def test_service_treats_the_lock_exit_code_as_success_and_others_as_failure(name: str) -> None:
    codes = Unit.load(name).words("Service", "SuccessExitStatus")
    assert "75" in codes
    assert not {"1", "2", "3"} & set(codes)


@pytest.mark.parametrize("name", SERVICES)
def test_service_time_limits_leave_room_for_in_flight_refreshes(name: str) -> None:
    unit = Unit.load(name)
    # RuntimeMaxSec= has no effect on Type=oneshot; TimeoutStartSec= is the real limit.
    limit = timespan(unit.value("Service", "TimeoutStartSec"))
    assert limit > max_runtime_default()
    assert limit < timedelta(minutes=30)
    if unit.values("Service", "RuntimeMaxSec"):
        assert timespan(unit.value("Service", "RuntimeMaxSec")) > max_runtime_default()
    assert unit.value("Service", "KillSignal") == "SIGTERM"
    assert unit.value("Service", "KillMode") in ("control-group", "mixed")
    http_timeout = float(refresh_default("--http-timeout"))
    assert timespan(unit.value("Service", "TimeoutStopSec")) >= timedelta(seconds=3 * http_timeout)


def test_refresh_run_ends_before_the_next_tick() -> None:
    service = Unit.load("tokenrefresh-refresh.service")
    timer = Unit.load("tokenrefresh-refresh.timer")
    start_delay = timespan(timer.value("Timer", "RandomizedDelaySec"))
    limit = timespan(service.value("Service", "TimeoutStartSec"))
    assert start_delay + limit <= timedelta(minutes=30)


@pytest.mark.parametrize("name", SERVICES)
def test_service_gets_its_secrets_as_credentials_mapped_to_file_variables(name: str) -> None:
    unit = Unit.load(name)
    credentials = unit.credentials()
    environment = unit.environment()
    assert config.DATABASE_URL + "_FILE" in environment
    for credential, path in credentials.items():
        assert PurePosixPath(path).parent == SECRET_FILE_DIR, path
        users = [var for var, value in environment.items() if value == f"%d/{credential}"]
        assert len(users) == 1, f"credential {credential} is used by {users}"
        assert users[0].endswith("_FILE")
        assert users[0].removesuffix("_FILE") in SECRET_NAMES
    for variable, value in environment.items():
        assert variable not in SECRET_NAMES, f"{variable} inline: use {variable}_FILE"
        if variable.removesuffix("_FILE") in SECRET_NAMES:
            assert value.startswith("%d/"), f"{variable} must point into the credentials dir"
            assert value.removeprefix("%d/") in credentials, f"{variable}: no LoadCredential"
    assert not unit.values("Service", "EnvironmentFile"), (
        "the EnvironmentFile= variant stays a comment"
    )
    assert_no_inline_secret(unit.text, name)


def test_cleanup_gets_neither_the_tiktok_credentials_nor_the_encryption_keys() -> None:
    environment = Unit.load("tokenrefresh-cleanup.service").environment()
    for name in (config.ENCRYPTION_KEYS, config.CLIENT_KEY, config.CLIENT_SECRET):
        assert name + "_FILE" not in environment


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_as_its_own_user_with_the_database_in_its_state_directory(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = Unit.load(name)
    state = unit.value("Service", "StateDirectory")
    user = unit.value("Service", "User")
    assert user not in ("root", "0")
    assert unit.value("Service", "StateDirectoryMode") == "0700"
    sysusers = (SYSTEMD / "tokenrefresh.sysusers").read_text(encoding="utf-8")
    declared = [
        shlex.split(line) for line in sysusers.splitlines() if line and not line.startswith("#")
    ]
    assert ["u", user, "-"] == declared[0][:3]
    assert declared[0][4] == f"/var/lib/{state}"
    # The SQLite default, when no database URL is given, is in the StateDirectory (%S/...).
    xdg = expand(unit.environment()["XDG_DATA_HOME"], {"S": "/var/lib"})
    monkeypatch.setenv("XDG_DATA_HOME", xdg)
    assert default_database_path().parent == Path("/var/lib", state)


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_hardened(name: str) -> None:
    unit = Unit.load(name)

    def one(key: str) -> str:
        return unit.value("Service", key)

    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") in ("yes", "read-only", "tmpfs")
    assert one("PrivateTmp") == "yes"
    assert one("PrivateDevices") == "yes"
    assert set(unit.words("Service", "RestrictAddressFamilies")) == {
        "AF_INET",
        "AF_INET6",
        "AF_UNIX",
    }
    assert unit.values("Service", "CapabilityBoundingSet") == []
    assert "CapabilityBoundingSet" in unit.sections["Service"], "an empty bounding set"
    assert "@system-service" in unit.words("Service", "SystemCallFilter")
    for key in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups"):
        assert one(key) == "yes"
    writable = unit.words("Service", "ReadWritePaths")
    assert writable == [], "writes go to the StateDirectory only"


@pytest.mark.parametrize(("name", "expected"), TIMERS.items(), ids=list(TIMERS))
def test_timer_starts_its_service_on_schedule(name: str, expected: tuple[str, str]) -> None:
    service, calendar = expected
    timer = Unit.load(name)
    assert timer.value("Timer", "Unit") == service
    assert (SYSTEMD / service).is_file()
    assert timer.value("Timer", "OnCalendar") == calendar
    assert timer.value("Timer", "Persistent") == "true"
    assert timespan(timer.value("Timer", "RandomizedDelaySec")) <= timedelta(minutes=5)
    assert timer.value("Install", "WantedBy") == "timers.target"


def test_environment_file_example_names_only_configuration_variables() -> None:
    text = (SYSTEMD / "tokenrefresh.env.example").read_text(encoding="utf-8")
    entries = [line.lstrip("#").split("=", 1) for line in text.splitlines() if "=" in line]
    assignments = {name: value for name, value in entries if re.fullmatch(r"[A-Z_]+", name)}
    assert set(assignments) == set(SECRET_NAMES)
    for name, value in assignments.items():
        assert PLACEHOLDER in value, f"{name}: a placeholder, not a value"
    for service in SERVICES:
        assert "#EnvironmentFile=/etc/tokenrefresh/tokenrefresh.env" in Unit.load(service).text


def systemd_environment(unit: Unit, values: Mapping[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment systemd would give the service, its credentials written to tmp_path."""
    credentials_dir = tmp_path / "credentials"
    credentials_dir.mkdir()
    environment = unit.environment()
    for credential in unit.credentials():
        (variable,) = [k for k, v in environment.items() if v == f"%d/{credential}"]
        (credentials_dir / credential).write_text(values[variable.removesuffix("_FILE")] + "\n")
    specifiers = {"d": str(credentials_dir), "S": str(tmp_path / "state"), "n": unit.name}
    return {name: expand(value, specifiers) for name, value in environment.items()}


# ----------------------------------------------------------------------------- Kubernetes


def load_documents(name: str) -> list[dict[str, Any]]:
    text = (KUBERNETES / name).read_text(encoding="utf-8")
    assert_no_inline_secret(text, name)
    return [document for document in yaml.safe_load_all(text) if document is not None]


def cronjobs() -> dict[str, dict[str, Any]]:
    """The CronJobs of cronjob.yaml by the command they run."""
    found = {}
    for document in load_documents("cronjob.yaml"):
        if document["kind"] == "CronJob":
            container = pod_spec(document)["containers"][0]
            found[container["args"][0]] = document
    return found


def job_spec(document: Mapping[str, Any]) -> dict[str, Any]:
    if document["kind"] == "CronJob":
        return dict(document["spec"]["jobTemplate"]["spec"])
    return dict(document["spec"])


def pod_spec(document: Mapping[str, Any]) -> dict[str, Any]:
    return dict(job_spec(document)["template"]["spec"])


def the_secret() -> dict[str, Any]:
    (secret,) = [d for d in load_documents("cronjob.yaml") if d["kind"] == "Secret"]
    return secret


def workloads() -> list[dict[str, Any]]:
    return [*cronjobs().values(), *load_documents("db-upgrade-job.yaml"), admin_job()]


def admin_job() -> dict[str, Any]:
    """admin-job.yaml: waits for `kubectl exec` (tests/test_recipes_container.py runs the
    README's commands in its environment)."""
    (document,) = load_documents("admin-job.yaml")
    return document


def command_workloads() -> list[dict[str, Any]]:
    """The workloads whose container runs a tokenrefresh command itself."""
    return [d for d in workloads() if pod_spec(d)["containers"][0]["command"] == ["tokenrefresh"]]


def crontab_schedules() -> dict[str, str]:
    """crontab.example's schedule of each tokenrefresh command."""
    schedules = {}
    for line in CRONTAB.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[5] == "tokenrefresh":
            schedules[fields[6]] = " ".join(fields[:5])
    return schedules


# Every field the manifests use, per object: a misspelt field is silently dropped by some
# clients, and this is the cheapest guard against that without a cluster.
KNOWN_FIELDS = {
    "cronjob": {
        "schedule",
        "timeZone",
        "concurrencyPolicy",
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
        "suspend",
        "jobTemplate",
    },
    "job": {
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
        "template",
        # cronjob-sharded.yaml: an Indexed Job, one pod per shard.
        "completionMode",
        "completions",
        "parallelism",
        "backoffLimitPerIndex",
    },
    "pod": {
        "restartPolicy",
        "terminationGracePeriodSeconds",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "securityContext",
        "containers",
        "volumes",
        "serviceAccountName",
        "imagePullSecrets",
        "nodeSelector",
        "tolerations",
        "affinity",
    },
    "podSecurityContext": {
        "runAsNonRoot",
        "runAsUser",
        "runAsGroup",
        "fsGroup",
        "fsGroupChangePolicy",
        "supplementalGroups",
        "seccompProfile",
    },
    "container": {
        "name",
        "image",
        "imagePullPolicy",
        "command",
        "args",
        "env",
        "volumeMounts",
        "securityContext",
        "resources",
    },
    "securityContext": {
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "runAsNonRoot",
        "runAsUser",
        "runAsGroup",
        "capabilities",
        "seccompProfile",
        "privileged",
    },
}


@pytest.mark.parametrize("document", workloads(), ids=lambda d: d["metadata"]["name"])
def test_manifests_use_only_known_fields(document: dict[str, Any]) -> None:
    if document["kind"] == "CronJob":
        assert set(document["spec"]) <= KNOWN_FIELDS["cronjob"]
    assert set(job_spec(document)) <= KNOWN_FIELDS["job"]
    pod = pod_spec(document)
    assert set(pod) <= KNOWN_FIELDS["pod"]
    assert set(pod["securityContext"]) <= KNOWN_FIELDS["podSecurityContext"]
    for container in pod["containers"]:
        assert set(container) <= KNOWN_FIELDS["container"]
        assert set(container["securityContext"]) <= KNOWN_FIELDS["securityContext"]


def test_cronjobs_run_refresh_and_cleanup_on_the_crontab_schedule() -> None:
    jobs = cronjobs()
    assert set(jobs) == set(CRONJOB_ARGS)
    schedules = crontab_schedules()
    assert schedules == {"refresh": "*/30 * * * *", "cleanup": "17 */6 * * *"}
    for command, document in jobs.items():
        assert document["apiVersion"] == "batch/v1"
        assert document["spec"]["schedule"] == schedules[command]
        assert document["spec"]["concurrencyPolicy"] == "Forbid"
        assert 10 <= document["spec"]["startingDeadlineSeconds"] <= 6 * 3600
        (container,) = pod_spec(document)["containers"]
        assert container["command"] == ["tokenrefresh"]
        assert container["args"] in (CRONJOB_ARGS[command], CRONJOB_ARGS[command] + OPTIONAL_ARGS)


@pytest.mark.parametrize("document", workloads(), ids=lambda d: d["metadata"]["name"])
def test_jobs_stop_in_time_and_are_not_retried(document: dict[str, Any]) -> None:
    job = job_spec(document)
    pod = pod_spec(document)
    assert job["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] >= 60
    if document["kind"] == "CronJob":
        deadline = timedelta(seconds=job["activeDeadlineSeconds"])
        assert deadline > max_runtime_default()
        grace = timedelta(seconds=pod["terminationGracePeriodSeconds"])
        assert deadline + grace <= timedelta(minutes=30), "gone before the next tick"


@pytest.mark.parametrize("document", workloads(), ids=lambda d: d["metadata"]["name"])
def test_pods_are_locked_down(document: dict[str, Any]) -> None:
    pod = pod_spec(document)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert container["image"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind])
    for volume in pod["volumes"]:
        assert set(volume) & {"secret", "emptyDir"}, "nothing persistent: PostgreSQL only"


def secret_files(document: Mapping[str, Any]) -> tuple[PurePosixPath, dict[str, str]]:
    """Where the pod mounts the Secret, and which file there holds which key."""
    pod = pod_spec(document)
    secret = the_secret()
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["defaultMode"] == 0o400
    items = volume["secret"].get("items")
    files = (
        {item["path"]: item["key"] for item in items}
        if items
        else {key: key for key in secret["stringData"]}
    )
    assert set(files.values()) <= set(secret["stringData"]), "keys the Secret does not have"
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    return PurePosixPath(mount["mountPath"]), files


@pytest.mark.parametrize("document", workloads(), ids=lambda d: d["metadata"]["name"])
def test_secrets_reach_the_pod_only_as_files(document: dict[str, Any]) -> None:
    mount_path, files = secret_files(document)
    (container,) = pod_spec(document)["containers"]
    assert "envFrom" not in container
    used = set()
    for variable in container["env"]:
        name = variable["name"]
        assert set(variable) == {"name", "value"}, f"{name}: no valueFrom, files only"
        assert name not in SECRET_NAMES, f"{name} inline: use {name}_FILE"
        if name.removesuffix("_FILE") in SECRET_NAMES:
            path = PurePosixPath(variable["value"])
            assert path.parent == mount_path, f"{name} must point into the Secret volume"
            assert path.name in files, f"{name}: {path.name} is not in the Secret volume"
            used.add(path.name)
    assert used == set(files), "every mounted secret is used, and only those"
    assert config.DATABASE_URL + "_FILE" in {v["name"] for v in container["env"]}


def test_secret_is_a_marked_placeholder_for_postgresql() -> None:
    secret = the_secret()
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "secret"
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER in value, f"{key}: a placeholder, not a value"
    assert secret["stringData"]["database-url"].startswith("postgresql://")
    mounted = {key for job in cronjobs().values() for key in secret_files(job)[1].values()}
    assert mounted == set(secret["stringData"]), "every key of the Secret is used"


def test_kubernetes_logs_are_json() -> None:
    for document in cronjobs().values():
        (container,) = pod_spec(document)["containers"]
        environment = {v["name"]: v["value"] for v in container["env"]}
        assert (
            environment.get("TOKENREFRESH_LOG_FORMAT") == "json"
            or container["args"][-2:] == OPTIONAL_ARGS
        )
    log_format = command_options("refresh")["--log-format"]
    assert log_format.envvar == "TOKENREFRESH_LOG_FORMAT"
    assert type(log_format.default)("json") == "json"  # a value the option takes
    # The variable is really read: a bad value is a usage error.
    result = CliRunner().invoke(app, ["refresh", "-q"], env={"TOKENREFRESH_LOG_FORMAT": "xml"})
    assert result.exit_code == 2


def kubernetes_environment(
    document: Mapping[str, Any], values: Mapping[str, str], tmp_path: Path
) -> dict[str, str]:
    """The pod's environment, its Secret volume written to tmp_path."""
    mount_path, _ = secret_files(document)
    (container,) = pod_spec(document)["containers"]
    volume = tmp_path / "secret-volume"
    volume.mkdir()
    environment = {}
    for variable in container["env"]:
        name, value = variable["name"], variable["value"]
        if name.removesuffix("_FILE") in SECRET_NAMES:
            relative = PurePosixPath(value).relative_to(mount_path)
            (volume / relative).write_text(values[name.removesuffix("_FILE")])
            value = str(volume / relative)
        environment[name] = value
    return environment


# ----------------------------------------------------------------------------- the commands


@pytest.fixture
def values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Working secret values, and no configuration from the developer's environment."""
    for name in [n for n in os.environ if n.startswith(CONFIG_PREFIXES)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / "data"))
    return {
        config.DATABASE_URL: f"sqlite:///{tmp_path / 'db' / 'tokenrefresh.db'}",
        config.ENCRYPTION_KEYS: Fernet.generate_key().decode("ascii"),
        config.CLIENT_KEY: "deploy-test-client-key",
        config.CLIENT_SECRET: "deploy-test-client-secret",
        # Should a recipe enable the pings: nothing listens there, and a ping is best effort.
        config.PING_URL: "http://127.0.0.1:9/ping/refresh",
        config.CLEANUP_PING_URL: "http://127.0.0.1:9/ping/cleanup",
    }


def run_recipe(argv: list[str], environment: Mapping[str, str]) -> None:
    """Run the command as the recipe does: on an empty database it must succeed silently."""
    assert set(environment).isdisjoint(SECRET_NAMES)
    settings = Settings.from_env(environment)
    assert settings.database_url is not None, "the database URL comes from its file"
    database = Path(settings.database_url.reveal().removeprefix("sqlite:///"))
    assert not database.exists()
    if argv[:2] != ["db", "upgrade"]:
        # As the recipes' READMEs say: the schema first (only `db upgrade --create` creates
        # a SQLite file).
        refused = CliRunner().invoke(app, argv, env=dict(environment), catch_exceptions=False)
        assert refused.exit_code == 3, refused.output
        assert not database.exists()
        upgrade = CliRunner().invoke(
            app, ["db", "upgrade", "--create", "-q"], env=dict(environment), catch_exceptions=False
        )
        assert upgrade.exit_code == 0, upgrade.output
    else:
        # The upgrade job's database is PostgreSQL, made by its administrator; here it is a
        # SQLite file, so it must exist before the job (an empty file is an empty database).
        database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        database.touch(mode=0o600)
    result = CliRunner().invoke(app, argv, env=dict(environment), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert database.is_file(), "the command used the database of the recipe's secret file"
    if "-q" in argv:
        assert result.stdout == "", "-q prints nothing when all is well"
    if argv[0] == "refresh":
        assert settings.encryption_keys
        assert settings.require_client_credentials().client_key == "deploy-test-client-key"


@pytest.mark.parametrize("name", SERVICES)
def test_systemd_service_command_runs_with_its_credentials(
    name: str, values: dict[str, str], tmp_path: Path
) -> None:
    unit = Unit.load(name)
    environment = systemd_environment(unit, values, tmp_path)
    run_recipe(shlex.split(unit.value("Service", "ExecStart"))[1:], environment)


@pytest.mark.parametrize("document", command_workloads(), ids=lambda d: d["metadata"]["name"])
def test_kubernetes_command_runs_with_its_secret_files(
    document: dict[str, Any], values: dict[str, str], tmp_path: Path
) -> None:
    environment = kubernetes_environment(document, values, tmp_path)
    (container,) = pod_spec(document)["containers"]
    run_recipe(container["args"], environment)


def recipe_commands() -> list[list[str]]:
    """Every command line of the recipes (and the optional --log-format json), once each."""
    commands = [shlex.split(Unit.load(name).value("Service", "ExecStart"))[1:] for name in SERVICES]
    commands += [pod_spec(d)["containers"][0]["args"] for d in command_workloads()]
    commands.append(CRONJOB_ARGS["refresh"] + OPTIONAL_ARGS)
    return [list(argv) for argv in dict.fromkeys(tuple(argv) for argv in commands)]


@pytest.mark.parametrize("argv", recipe_commands(), ids=" ".join)
def test_recipe_commands_and_options_exist(argv: list[str]) -> None:
    words = [word for word in argv if not word.startswith("-")]
    options = [word for word in argv if word.startswith("-")]
    command_words = words[: 2 if words[0] in ("db", "accounts", "keys") else 1]
    known = command_options(*command_words)
    for name in options:
        assert name in known, f"tokenrefresh {' '.join(command_words)} has no {name}"


# ----------------------------------------------------------------------------- sharded


def sharded_cronjob() -> dict[str, Any]:
    """cronjob-sharded.yaml's CronJob: an Indexed Job, one pod per shard."""
    (document,) = load_documents("cronjob-sharded.yaml")
    assert document["kind"] == "CronJob"
    return document


def expand_kubernetes(value: str, environment: Mapping[str, str]) -> str:
    """`$(VAR)` in a container's command or args, as Kubernetes expands it: from the
    container's environment, no shell involved; a name it does not know stays as written;
    `$$` is one `$` (so `$$(VAR)` is the text `$(VAR)`)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return environment.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, value)


def test_kubernetes_expansion_follows_the_documented_rules() -> None:
    environment = {"JOB_COMPLETION_INDEX": "2", "A": "x"}
    assert expand_kubernetes("$(JOB_COMPLETION_INDEX)/4", environment) == "2/4"
    assert expand_kubernetes("$(UNKNOWN)/4", environment) == "$(UNKNOWN)/4"
    assert expand_kubernetes("$$(A) $(A) $A $", environment) == "$(A) x $A $"


def shard_count(document: Mapping[str, Any]) -> int:
    job = job_spec(document)
    assert job["completionMode"] == "Indexed"
    count = job["completions"]
    assert isinstance(count, int)
    assert count >= 2
    assert job["parallelism"] == count, "every shard runs at once, within one tick"
    return count


def test_sharded_cronjob_runs_one_pod_per_shard_with_its_index() -> None:
    document = sharded_cronjob()
    count = shard_count(document)
    spec = document["spec"]
    assert spec["schedule"] == crontab_schedules()["refresh"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 10 <= spec["startingDeadlineSeconds"] <= 6 * 3600
    assert document["metadata"]["name"] not in {d["metadata"]["name"] for d in workloads()}
    job = job_spec(document)
    # One shard's failure must not stop the others: retries are counted per index, none.
    assert job["backoffLimitPerIndex"] == 0
    assert "backoffLimit" not in job, "with backoffLimitPerIndex it defaults to unlimited"
    pod = pod_spec(document)
    assert pod["restartPolicy"] == "Never", "backoffLimitPerIndex needs it"
    deadline = timedelta(seconds=job["activeDeadlineSeconds"])
    grace = timedelta(seconds=pod["terminationGracePeriodSeconds"])
    assert max_runtime_default() < deadline
    assert deadline + grace <= timedelta(minutes=30), "gone before the next tick"
    (container,) = pod["containers"]
    assert container["command"] == ["tokenrefresh"]
    assert container["args"] in (
        ["refresh", "-q", "--shard", f"$(JOB_COMPLETION_INDEX)/{count}"],
        ["refresh", "-q", "--shard", f"$(JOB_COMPLETION_INDEX)/{count}", *OPTIONAL_ARGS],
    )
    # The control plane sets it, per pod; a value here would give every pod the same shard.
    assert "JOB_COMPLETION_INDEX" not in {v["name"] for v in container["env"]}
    # And as the other recipes: locked down, secrets as files, only known fields, JSON logs.
    test_manifests_use_only_known_fields(document)
    test_pods_are_locked_down(document)
    test_secrets_reach_the_pod_only_as_files(document)
    assert {v["name"]: v["value"] for v in container["env"]}["TOKENREFRESH_LOG_FORMAT"] == "json"


def test_sharded_pods_together_refresh_every_account_once(
    values: dict[str, str], tmp_path: Path
) -> None:
    """Each pod's exact command line and environment, with the index Kubernetes gives it,
    against the real CLI: shards 0..N-1 refresh every due account, each exactly once, and
    each only the accounts of its shard."""
    document = sharded_cronjob()
    count = shard_count(document)
    (container,) = pod_spec(document)["containers"]
    pod_environment = kubernetes_environment(document, values, tmp_path)
    with TikTokStandIn(
        client_key=values[config.CLIENT_KEY], client_secret=values[config.CLIENT_SECRET]
    ) as standin:
        # The one setting a real pod has no need of: where TikTok is.
        pod_environment["TIKTOK_API_BASE_URL"] = standin.base_url
        runner = CliRunner()

        def invoke(
            argv: list[str], environment: Mapping[str, str], stdin: str | None = None
        ) -> Any:
            result = runner.invoke(
                app, argv, input=stdin, env=dict(environment), catch_exceptions=False
            )
            assert result.exit_code == 0, (argv, result.output)
            return result

        invoke(["db", "upgrade", "--create", "-q"], pod_environment)
        issued = [standin.issue(f"shard-user-{number}") for number in range(3 * count + 1)]
        lines = [json.dumps(tokens.as_import_line(expires_in=600)) for tokens in issued]
        invoke(["accounts", "import", "-", "-q"], pod_environment, "\n".join(lines) + "\n")
        listed = invoke(["accounts", "list", "--json"], pod_environment).stdout
        ids = {account["open_id"]: account["id"] for account in json.loads(listed)["accounts"]}

        for index in range(count):
            environment = {**pod_environment, "JOB_COMPLETION_INDEX": str(index)}
            argv = [expand_kubernetes(word, environment) for word in container["args"]]
            assert argv[argv.index("--shard") + 1] == f"{index}/{count}"
            before = {tokens.open_id: standin.refresh_count(tokens.open_id) for tokens in issued}
            result = invoke(argv, environment)
            assert result.stdout == "", "-q prints nothing when all is well"
            refreshed = {
                open_id for open_id, n in before.items() if standin.refresh_count(open_id) > n
            }
            assert refreshed == {o for o, i in ids.items() if i % count == index}, index

    assert {tokens.open_id: standin.refresh_count(tokens.open_id) for tokens in issued} == {
        tokens.open_id: 1 for tokens in issued
    }


# ----------------------------------------------------------------------------- systemd-analyze


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="optional: systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    # verify insists that ExecStart= exists: point it at the tokenrefresh being tested.
    executable = Path(sys.executable).with_name("tokenrefresh")
    assert executable.is_file()
    names = [*SERVICES, *TIMERS]
    for name in names:
        text = (SYSTEMD / name).read_text(encoding="utf-8")
        text = re.sub(r"^ExecStart=\S+", f"ExecStart={executable}", text, flags=re.MULTILINE)
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Unknown keys and bad values are only warnings: any line about our units is a failure.
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if "tokenrefresh" in line
    ]
    assert result.returncode == 0, result.stderr
    assert complaints == []


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="optional: systemd-analyze is not installed")
@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("tokenrefresh-refresh.timer", timedelta(minutes=30)),
        ("tokenrefresh-cleanup.timer", timedelta(hours=6)),
    ],
)
def test_systemd_analyze_confirms_the_schedule(name: str, step: timedelta) -> None:
    assert SYSTEMD_ANALYZE is not None
    calendar = Unit.load(name).value("Timer", "OnCalendar")
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", "--iterations=5", calendar],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"LC_ALL": "C", "TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )
    times = [
        datetime.fromisoformat(stamp)
        for stamp in re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", result.stdout)
    ]
    assert len(times) == 5
    assert {later - earlier for earlier, later in pairwise(times)} == {step}
    expected_minute = 0 if step == timedelta(minutes=30) else 17
    assert all(time.minute % 30 == expected_minute % 30 for time in times)
    if step == timedelta(hours=6):
        assert all(time.hour % 6 == 0 and time.minute == 17 for time in times)
