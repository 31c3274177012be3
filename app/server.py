"""`cogvideox-ddim-inversion app`: its flags (`add_app_arguments`), serving the page (`launch_app`) and stopping it
(`run_app`: Ctrl+C or SIGTERM end the run in progress, remove the temporary folder and exit 0).

Safe to expose: upload size and duration limits; every file the app writes (Gradio's uploads and cache included)
lives under one temporary folder, removed when the app exits; bad input is refused in the page and the app keeps
serving. Gradio is imported only when the app starts.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass

from ..workflow.flags import add_model_options, settings_from_args  # imports no torch (cli --help stays fast)
from ..workflow.settings import MODEL_OPTIONS


MiB = 1024**2


def add_app_arguments(parser):
    """The app's flags: the command line's model and memory flags, then the server and its limits."""
    add_model_options(parser, "app")
    model = next(action for action in parser._actions if action.dest == "model")
    model.default = None  # no --model: the committed toy checkpoint (offline, CPU)
    model.help = "Hub id or local folder of a CogVideoX checkpoint (default: the committed toy checkpoint)"
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 0.0.0.0 serves the local network (default: %(default)s)")
    server.add_argument("--port", type=int, default=None, help="default: the first free port from 7860")
    server.add_argument("--share", action="store_true",
                        help="also open a temporary public link through Gradio (default: off)")
    server.add_argument("--max-upload-mb", type=float, default=100.0,
                        help="largest upload accepted, in MB (default: %(default)s)")
    server.add_argument("--max-duration", type=float, default=60.0, metavar="SECONDS",
                        help="longest video accepted, read from the file's header before decoding; it bounds what "
                        "the whole clip costs: windows grow with it, memory stays that of one window (default: "
                        "%(default)s)")
    server.add_argument("--max-prompts", type=int, default=4, metavar="N",
                        help="most edit prompts a visitor may give per run (default: %(default)s)")
    server.add_argument("--max-steps", type=int, default=100, metavar="N",
                        help="most steps a visitor may ask for (default: %(default)s)")
    server.add_argument("--max-windows-per-call", type=int, default=4, metavar="N",
                        help="most windows per transformer call a visitor may ask for: memory (default: %(default)s)")
    server.add_argument("--max-uploads", type=int, default=20, metavar="N",
                        help="uploads kept at once; the oldest is removed to make room (default: %(default)s)")
    server.add_argument("--max-upload-cache-mb", type=float, default=None, metavar="MB",
                        help="total size of the uploads kept; the oldest are removed to make room (default: 5 times "
                        "--max-upload-mb)")
    server.add_argument("--keep-files-minutes", type=float, default=60.0, metavar="MINUTES",
                        help="uploads and results older than this are removed (default: %(default)s)")
    server.add_argument("--trajectory-device", default=None, metavar="DEVICE",
                        help="where runs keep the inverted trajectory, e.g. cpu (default: the model's device); "
                        "a server setting, never the page's")
    server.add_argument("--temp-dir", default=None,
                        help="folder in which the app makes its temporary folder (default: the system's)")


def build_parser() -> argparse.ArgumentParser:
    """The app's own parser (`cogvideox-ddim-inversion app`'s flags), for callers without the command line."""
    parser = argparse.ArgumentParser(prog="cogvideox-ddim-inversion app", description="Serve the editing page.")
    add_app_arguments(parser)
    return parser


class UploadCache:
    """Bounds what anonymous visitors can leave on the server: Gradio's upload route keeps each upload (under the
    app's folder) until its cache cleaner runs; this keeps at most `max_count` uploads of at most `max_bytes` in all,
    removing the oldest (never one a run is using) before each new upload is taken."""

    def __init__(self, max_count: int, max_bytes: int, in_use=lambda: ()):
        self.max_count, self.max_bytes, self.in_use = max_count, max_bytes, in_use
        self.folders: list[str] = []  # the uploads' folders, oldest first
        self.lock = threading.Lock()

    @staticmethod
    def size(folder: str) -> int:
        return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)

    def make_room(self, incoming: int):
        """Remove the oldest uploads until one more of `incoming` bytes fits."""
        with self.lock:
            self.folders = [folder for folder in self.folders if os.path.isdir(folder)]
            busy = {os.path.dirname(os.path.abspath(path)) for path in self.in_use() if path}
            sizes = {folder: self.size(folder) for folder in self.folders}
            for folder in list(self.folders):
                if len(self.folders) < self.max_count and sum(sizes.values()) + incoming <= self.max_bytes:
                    break
                if folder in busy:
                    continue
                shutil.rmtree(folder, ignore_errors=True)
                self.folders.remove(folder)
                sizes.pop(folder)

    def record(self, body: bytes):
        """The folders of the files an upload response names (Gradio answers with their paths)."""
        import json

        try:
            paths = json.loads(body)
        except ValueError:
            return
        with self.lock:
            for path in paths if isinstance(paths, list) else []:
                folder = os.path.dirname(os.path.abspath(str(path)))
                if folder not in self.folders:
                    self.folders.append(folder)

    def guard(self, server_app):
        """Wrap the app (ASGI, outside Gradio's routes) so that each upload to Gradio's upload route first makes room,
        then is recorded."""
        from starlette.concurrency import run_in_threadpool

        if server_app.middleware_stack is None:
            server_app.middleware_stack = server_app.build_middleware_stack()
        original = server_app.middleware_stack

        async def guarded(scope, receive, send):
            if scope.get("type") != "http" or scope.get("method") != "POST" or not scope.get("path", "").rstrip(
                    "/").endswith("/gradio_api/upload"):
                return await original(scope, receive, send)
            headers = dict(scope.get("headers") or [])
            incoming = int(headers.get(b"content-length", b"0") or 0)
            await run_in_threadpool(self.make_room, incoming)
            body = []

            async def capture(message):
                if message["type"] == "http.response.body":
                    body.append(message.get("body", b""))
                await send(message)

            await original(scope, receive, capture)
            self.record(b"".join(body))

        server_app.middleware_stack = guarded


@dataclass
class AppServer:
    """A launched app: the Gradio Blocks, its address, the temporary folder holding every file it writes, and the
    editor running its edits (`editor.runs`: the run in progress)."""

    blocks: object
    url: str
    work_dir: str
    editor: object
    uploads: object = None  # the upload cache (`UploadCache`)

    @property
    def runs(self):
        return self.editor.runs

    def close(self, wait_s: float = 60.0):
        """Stop the run in progress at its next step (waiting up to `wait_s`), stop serving, remove the folder."""
        self.runs.stop()
        self.runs.wait_idle(wait_s)
        self.blocks.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _work_dir(temp_dir: str | None) -> str:
    """The app's temporary folder, removed at exit. Gradio keeps uploads and the files it serves in GRADIO_TEMP_DIR
    (read when components are made): they go in the app's folder too. Saved inversions stay outside what is served."""
    work_dir = tempfile.mkdtemp(prefix="cogvideox-ddim-inversion-app-", dir=temp_dir)
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    gradio_dir = os.path.join(work_dir, "gradio")
    os.makedirs(gradio_dir)
    os.environ["GRADIO_TEMP_DIR"] = gradio_dir
    return work_dir


def launch_app(args, prevent_thread_lock: bool = False) -> AppServer:
    """Load the checkpoint, build the page and serve it (blocking unless `prevent_thread_lock`)."""
    if importlib.util.find_spec("gradio") is None:
        raise ImportError(
            "The app needs Gradio: pip install 'cogvideox-ddim-inversion[app]' (or pip install -e \".[app]\" in a "
            "clone)."
        )
    from ..workflow.checks import check_devices, read_checkpoint_config
    from ..workflow.loading import load_pipeline
    from ..workflow.run import print_log
    from .session import Editor, Limits

    model = args.model
    if model is None:
        from ..toy.demo import TOY_CHECKPOINT

        model = TOY_CHECKPOINT
    model_settings = settings_from_args(argparse.Namespace(**{**vars(args), "model": model}), MODEL_OPTIONS)
    if min(args.max_upload_mb, args.max_duration, args.max_prompts, args.max_steps, args.max_windows_per_call,
           args.max_uploads, args.max_upload_cache_mb or 1) <= 0:
        raise ValueError("--max-upload-mb, --max-duration, --max-prompts, --max-steps, --max-windows-per-call, "
                         "--max-uploads and --max-upload-cache-mb must be positive.")
    check_devices(model_settings)
    from ..workflow.checks import check_device, check_device_available

    check_device(args.trajectory_device, "trajectory_device")
    check_device_available(args.trajectory_device, "trajectory_device")
    config = read_checkpoint_config(model)  # before any weights load, and what the page offers
    work_dir = _work_dir(args.temp_dir)
    pipe, load_info = load_pipeline(model_settings, log=print_log)
    max_upload_bytes = int(args.max_upload_mb * MiB)
    limits = Limits.for_checkpoint(config, max_duration=args.max_duration, max_prompts=args.max_prompts,
                                   max_steps=args.max_steps, max_windows_per_call=args.max_windows_per_call,
                                   trajectory_device=args.trajectory_device)
    editor = Editor(pipe, load_info, model, config, work_dir, args.max_duration,
                    no_video=f"Upload a video (videos up to {max_upload_bytes / MiB:g} MB and {args.max_duration:g} "
                    "s), or pick an example clip under it, first.", limits=limits)
    from .page import PAGE_CSS, UPLOAD_CHECK_JS, build_app

    blocks = build_app(editor, load_info, max_upload_bytes, keep_files_s=max(60, int(args.keep_files_minutes * 60)))
    blocks.queue(default_concurrency_limit=1, max_size=32)
    print_log(f"Temporary folder (removed on exit): {work_dir}")
    blocks.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=max_upload_bytes,
        allowed_paths=[os.path.join(work_dir, "runs"), os.path.join(work_dir, "examples")],
        prevent_thread_lock=True,
        quiet=prevent_thread_lock,
        head=UPLOAD_CHECK_JS,
        css=PAGE_CSS,
    )
    cache_mb = args.max_upload_cache_mb or 5 * args.max_upload_mb
    uploads = UploadCache(args.max_uploads, int(cache_mb * MiB), in_use=lambda: editor.in_use)
    uploads.guard(blocks.server_app)
    server = AppServer(blocks=blocks, url=blocks.local_url, work_dir=work_dir, editor=editor, uploads=uploads)
    if not prevent_thread_lock:
        _serve_until_stopped(server)
    return server


def _serve_until_stopped(server: AppServer):
    """Serve until Ctrl+C or SIGTERM, then stop the run in progress at its next step, remove the temporary folder
    and exit 0. Exiting from the signal handler while a run is computing aborted the process in torch's threads."""
    from ..workflow.run import print_log

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: stopping.set())
    while not stopping.wait(0.5):  # a timed wait: signal handlers run between waits
        pass
    print_log("Stopping: ending the run in progress, removing the temporary folder.")
    server.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is cleaned up; skip the interpreter's teardown, where Gradio's and torch's threads may still run.
    os._exit(0)


def run_app(args):
    """`cogvideox-ddim-inversion app`: serve the page until interrupted (Ctrl+C or SIGTERM, which both end the run in
    progress and remove the temporary folder on the way out, exit status 0)."""
    launch_app(args)


def main(argv=None):
    """`python -m cogvideox_ddim_inversion.app`: the app without the rest of the command line."""
    run_app(build_parser().parse_args(argv))
