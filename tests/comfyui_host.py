"""Run a real ComfyUI server with this pack mounted, for integration tests (no test functions here).

Configuration comes from the environment:

- ``COMFYUI_PATH``: a ComfyUI checkout (the folder holding ``main.py``). Tests skip when it is unset.
- ``COMFYUI_PYTHON``: the interpreter that runs ComfyUI (a venv with ComfyUI's requirements and the
  pack's); default: the interpreter running the tests.
- ``COMFYUI_STARTUP_TIMEOUT``: seconds to wait for ``/object_info`` (default 240).
- ``COMFYUI_KEEP_BASE=1``: keep the temporary base directory (log, outputs) after the run.

``running_comfyui(pack_dir, models)`` builds a throw-away base directory::

    <tmp>/custom_nodes/<PACK_FOLDER_NAME> -> pack_dir          (symlink)
    <tmp>/models/<folder>/<name>          -> each given file or folder (symlinks)
    <tmp>/output/                            what save nodes write
    <tmp>/comfyui.log                        server stdout + stderr

and starts ``main.py --cpu --listen 127.0.0.1 --port <free> --base-directory <tmp>`` (plus flags that keep
it offline and out of its own checkout when that ComfyUI knows them), waits for ``/object_info``, yields a
``ComfyUIClient``, and always stops the server's whole process group on exit. Everything talks to the
loopback address only, and every loop is bounded by a deadline. POSIX only (symlinks, process groups).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

HOST = "127.0.0.1"
# Deliberately not the project's name: ComfyUI-Manager may rename the folder, so the pack must never
# depend on it. No dots: ComfyUI turns the folder path into a module name.
PACK_FOLDER_NAME = "pack_under_test_hsxl"
DEFAULT_STARTUP_TIMEOUT = 240.0
_STOP_GRACE_SECONDS = 15.0

# Flags added only when the ComfyUI checkout defines them (checked in comfy/cli_args.py), so an older
# or newer ComfyUI without one of them still starts.
_OPTIONAL_FLAGS = (
    ("--disable-api-nodes",),  # no comfy_api_nodes: nothing that talks to api.comfy.org
    ("--disable-auto-launch",),  # never open a browser
    ("--database-url", "sqlite:///:memory:"),  # default DB file lives inside the checkout (user/comfyui.db)
)

# Environment for the server: offline hubs, no telemetry, unbuffered output for the log.
_SERVER_ENV = {
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}


class ComfyUIError(RuntimeError):
    """The server failed to start, died, or answered unexpectedly."""


class PromptRejected(ComfyUIError):
    """POST /prompt answered 400: the graph failed validation (``node_errors``) or is malformed (``error``)."""

    def __init__(self, body: dict):
        self.body = body
        self.error = body.get("error")
        self.node_errors = body.get("node_errors") or {}
        super().__init__(f"ComfyUI rejected the prompt: error={json.dumps(self.error)} "
                         f"node_errors={json.dumps(self.node_errors)}")


def comfyui_path() -> Path | None:
    """The ComfyUI checkout named by COMFYUI_PATH, or None when unset."""
    value = os.environ.get("COMFYUI_PATH", "").strip()
    return Path(value).expanduser().resolve() if value else None


def comfyui_python() -> str:
    """The interpreter that runs ComfyUI: COMFYUI_PYTHON, else the current one."""
    return os.environ.get("COMFYUI_PYTHON", "").strip() or sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def history_messages(entry: dict, event: str) -> list[dict]:
    """The data of every ``status.messages`` item of one kind in a /history entry.

    Kinds: ``execution_start``, ``execution_cached``, ``execution_success``, ``execution_error``
    (node_id, node_type, exception_type, exception_message, traceback, current_inputs),
    ``execution_interrupted`` (node_id, node_type).
    """
    messages = ((entry or {}).get("status") or {}).get("messages") or []
    return [data for kind, data in messages if kind == event]


class ComfyUIClient:
    """A small HTTP client for one running server (loopback only, every call with a timeout)."""

    def __init__(self, port: int, base_dir: Path, log_path: Path, process: subprocess.Popen,
                 pack_folder_name: str):
        self.port = port
        self.base_url = f"http://{HOST}:{port}"
        self.base_dir = base_dir
        self.output_dir = base_dir / "output"
        self.models_dir = base_dir / "models"
        self.log_path = log_path
        self.process = process
        self.pack_folder_name = pack_folder_name
        self.pack_mount = base_dir / "custom_nodes" / pack_folder_name
        self.client_id = uuid.uuid4().hex
        # No proxies: *_proxy variables in the environment must never route loopback calls elsewhere.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- raw HTTP -----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, payload=None, timeout: float = 30.0):
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def get_json(self, path: str, timeout: float = 30.0):
        status, body = self._request("GET", path, timeout=timeout)
        if status != 200:
            raise ComfyUIError(f"GET {path} answered {status}: {body[:2000]!r}")
        return json.loads(body)

    # -- API ----------------------------------------------------------------------------------------
    def object_info(self, node_class: str | None = None) -> dict:
        """GET /object_info (all node classes) or /object_info/<class>."""
        path = "/object_info" if node_class is None else "/object_info/" + urllib.parse.quote(node_class)
        return self.get_json(path, timeout=60.0)

    def queue(self, api_prompt: dict, extra_data: dict | None = None) -> str:
        """POST an API-format graph; returns its prompt_id. Raises PromptRejected on 400."""
        payload = {"prompt": api_prompt, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        status, body = self._request("POST", "/prompt", payload)
        parsed = json.loads(body) if body else {}
        if status == 400:
            raise PromptRejected(parsed)
        if status != 200:
            raise ComfyUIError(f"POST /prompt answered {status}: {body[:2000]!r}")
        return parsed["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        """The /history entry of a finished prompt, or None while it is queued or running."""
        return self.get_json("/history/" + urllib.parse.quote(prompt_id)).get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 300.0, poll: float = 0.25) -> dict:
        """Poll /history until the prompt finished (success, error or interrupt); return its entry.

        The entry has ``outputs`` (node id -> ui dict), ``status`` (``status_str`` 'success'|'error',
        ``completed``, ``messages``) and ``meta``. See ``history_messages`` for the error details.
        """
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry is not None:
                return entry
            if self.process.poll() is not None:
                raise ComfyUIError(f"ComfyUI exited ({self.process.returncode}) while running {prompt_id}\n"
                                   + self.log_tail())
            if time.monotonic() >= deadline:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout}s\n" + self.log_tail())
            time.sleep(poll)

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt: stop the running prompt (only that one when prompt_id is given).

        ComfyUI sets a flag; the node stops at its next ProgressBar update or
        throw_exception_if_processing_interrupted() call. Queued prompts are not removed.
        """
        status, body = self._request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})
        if status != 200:
            raise ComfyUIError(f"POST /interrupt answered {status}: {body[:500]!r}")

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        """POST /free: ask the worker to unload models / drop caches after the current prompt."""
        self._request("POST", "/free", {"unload_models": unload_models, "free_memory": free_memory})

    # -- log ----------------------------------------------------------------------------------------
    def log_text(self) -> str:
        """Everything the server printed so far (stdout and stderr together)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_text()
        return "--- ComfyUI log (tail) ---\n" + text[-chars:]

    def pack_import_lines(self) -> list[str]:
        """The 'Import times for custom nodes' lines about our mounted folder.

        ComfyUI prints '<seconds> seconds: <path>' on success and '<seconds> seconds (IMPORT FAILED): <path>'
        on failure (nodes.py, init_external_custom_nodes).
        """
        mount = str(self.pack_mount)
        return [line.strip() for line in self.log_text().splitlines()
                if " seconds" in line and line.rstrip().endswith(": " + mount)]


def _cli_flags(comfy_dir: Path) -> list[str]:
    try:
        cli_source = (comfy_dir / "comfy" / "cli_args.py").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cli_source = ""
    flags: list[str] = []
    for flag in _OPTIONAL_FLAGS:
        if f'"{flag[0]}"' in cli_source:
            flags.extend(flag)
    return flags


def _link_models(models_dir: Path, models: dict[str, list[Path]] | None) -> None:
    for folder, paths in (models or {}).items():
        if not folder or Path(folder).name != folder or folder in (".", ".."):
            raise ValueError(f"model folder name must be a plain folder name, got {folder!r}")
        target_dir = models_dir / folder
        target_dir.mkdir(parents=True, exist_ok=True)
        for path in paths:
            source = Path(path).expanduser().resolve()
            if not source.exists():
                raise FileNotFoundError(f"model path for models/{folder}/ does not exist: {source}")
            link = target_dir / source.name
            if link.exists() or link.is_symlink():
                raise ValueError(f"two model paths map to models/{folder}/{source.name}")
            link.symlink_to(source, target_is_directory=source.is_dir())


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and everything in its process group; bounded waits."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    # The leader may be gone while children of its group live on: always sweep the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_STOP_GRACE_SECONDS)


def _start(comfy_dir: Path, base_dir: Path, port: int, log_path: Path, cpu: bool,
           extra_args: list[str]) -> subprocess.Popen:
    command = [comfyui_python(), "main.py", "--listen", HOST, "--port", str(port),
               "--base-directory", str(base_dir)]
    if cpu:
        command.append("--cpu")
    command += _cli_flags(comfy_dir) + list(extra_args)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the test run's path (the repo root has a `nodes` package) must not leak in
    env.update(_SERVER_ENV)
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(command) + "\n").encode())
        log.flush()
        return subprocess.Popen(command, cwd=comfy_dir, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_ready(client: ComfyUIClient, timeout: float) -> str:
    """Return 'ready', or 'exited' if the process died; raise TimeoutError past the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.process.poll() is not None:
            return "exited"
        try:
            status, _ = client._request("GET", "/object_info", timeout=30.0)
            if status == 200:
                return "ready"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"ComfyUI did not answer /object_info within {timeout}s\n" + client.log_tail())


@contextlib.contextmanager
def running_comfyui(pack_dir, models: dict[str, list[Path]] | None = None, port: int | None = None, *,
                    cpu: bool = True, extra_args: list[str] | tuple[str, ...] = (),
                    startup_timeout: float | None = None,
                    pack_folder_name: str = PACK_FOLDER_NAME,
                    other_packs: dict[str, Path] | None = None) -> Iterator[ComfyUIClient]:
    """Start ComfyUI with ``pack_dir`` mounted as ``custom_nodes/<pack_folder_name>``; yield a client.

    ``other_packs`` maps further ``custom_nodes/`` folder names to node packs mounted beside it
    (benchmarks/bench_vs_ade.py mounts AnimateDiff-Evolved there).

    ``models`` maps a ComfyUI model folder name (``checkpoints``, ``vae``, ``diffusers``,
    ``animatediff_models``, ...) to files or folders linked into ``models/<folder>/`` by their own names.
    """
    comfy_dir = comfyui_path()
    if comfy_dir is None:
        raise ComfyUIError("COMFYUI_PATH is not set")
    if not (comfy_dir / "main.py").is_file():
        raise ComfyUIError(f"COMFYUI_PATH={comfy_dir} holds no main.py")
    pack_dir = Path(pack_dir).resolve()
    if not (pack_dir / "__init__.py").is_file():
        raise ComfyUIError(f"{pack_dir} is not a node pack (no __init__.py)")
    if startup_timeout is None:
        startup_timeout = float(os.environ.get("COMFYUI_STARTUP_TIMEOUT", DEFAULT_STARTUP_TIMEOUT))

    base_dir = Path(tempfile.mkdtemp(prefix="comfyui_host_")).resolve()
    process = None
    try:
        for sub in ("custom_nodes", "models", "output", "input", "user"):
            (base_dir / sub).mkdir()
        (base_dir / "custom_nodes" / pack_folder_name).symlink_to(pack_dir, target_is_directory=True)
        for name, other in (other_packs or {}).items():
            (base_dir / "custom_nodes" / name).symlink_to(Path(other).resolve(), target_is_directory=True)
        _link_models(base_dir / "models", models)
        log_path = base_dir / "comfyui.log"

        # A port picked here can be taken before the server binds it: retry a few times with new ones.
        attempts = 1 if port is not None else 3
        for attempt in range(attempts):
            chosen = port if port is not None else free_port()
            log_offset = log_path.stat().st_size if log_path.exists() else 0
            process = _start(comfy_dir, base_dir, chosen, log_path, cpu, list(extra_args))
            client = ComfyUIClient(chosen, base_dir, log_path, process, pack_folder_name)
            outcome = _wait_ready(client, startup_timeout)
            if outcome == "ready":
                break
            _stop(process)
            this_attempt = client.log_text()[log_offset:]
            if "address already in use" not in this_attempt.lower() or attempt == attempts - 1:
                raise ComfyUIError(f"ComfyUI exited during startup ({process.returncode})\n" + client.log_tail())
        yield client
    finally:
        if process is not None:
            _stop(process)
        if os.environ.get("COMFYUI_KEEP_BASE") == "1":
            sys.stderr.write(f"comfyui_host: kept {base_dir}\n")
        else:
            shutil.rmtree(base_dir, ignore_errors=True)
