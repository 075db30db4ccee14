"""End-to-end demo: a PBX goes from "not integrated" to Connected, against the simulators.

    make demo            (or: .venv/bin/python demo.py [--keep-running])

Starts the embedded Temporal dev server (SQLite under .data/demo, UI on http://127.0.0.1:8233), both
simulators, a worker and the web app (http://127.0.0.1:8080), then drives the operator CLI
(starter.py) and plays the PBX administrator for the two human moments: at the simulated PBX portal,
and at the service's pages reached by the signed link the operator passes on. Then a zero-downtime
secret rotation, with a reminder (carrying its own link) arriving at a local signed-webhook receiver
while the "admin" takes their time. Re-running is safe: state is kept under .data/demo; a Connected
integration is shown and rotated again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
from aiohttp import web
from temporalio.client import Client

from common.dev_server import dev_server_command
from common.links import LinkSigner
from common.settings import load_settings
from common.temporal import connect, exit_process
from models.integration import IntegrationStatus, Phase, RotationStage, admin_action, workflow_id_for
from notifications.message import Notification
from notifications.receiver import WebhookReceiver
from simulators.entra.seed import ADMIN_UPN
from simulators.human import PortalHuman, WebPagesHuman
from workflows.integration import IntegrationWorkflow

ROOT = Path(__file__).resolve().parent
DEMO_DIR = ROOT / ".data" / "demo"
INTEGRATION = "demo-pbx"
ADMIN = ADMIN_UPN
REMINDER_EVERY_SECONDS = 15
WEB_URL = "http://127.0.0.1:8080"
METRICS_URL = "http://127.0.0.1:9464"
DEMO_METRICS = (
    'yec_integrations{phase="Connected"}',
    "yec_secret_soonest_expiry_seconds",
    "yec_rotations_total",
    "yec_reminders_sent_total",
    'yec_graph_requests_total{method="POST",status="201"}',
)
TEMPORAL_UI = "http://127.0.0.1:8233"
# Shared by the demo's webhook receiver and the channel it configures (a demo value, not a secret).
DEMO_SIGNING_SECRET = "demo-webhook-signing-secret"


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def human(text: str) -> None:
    print(f"    [human] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_until(what: str, ready: Callable[[], bool], timeout: float = 60.0) -> None:
    started = time.monotonic()
    last_note = started
    while not ready():
        now = time.monotonic()
        if now - started > timeout:
            raise SystemExit(f"error: {what} did not come up within {timeout:.0f}s (logs: {DEMO_DIR / 'logs'})")
        if now - last_note >= 5:
            print(f"    still waiting for {what} ({now - started:.0f}s)", flush=True)
            last_note = now
        time.sleep(0.2)


def kept(name: str, make: Callable[[], str]) -> str:
    """A demo credential kept in .data/demo (0600) so re-runs can read earlier state."""
    path = DEMO_DIR / name
    if not path.exists():
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text().strip()


def write_shell_env(settings: dict[str, str]) -> Path:
    """The demo's settings as a file a shell can source (0600: it holds the demo's key)."""
    path = DEMO_DIR / "demo.env"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"{name}={shlex.quote(value)}\n" for name, value in settings.items())
    return path


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            env[name.strip()] = value.strip().strip("'\"")
    return env


class Processes:
    """Background processes with their output in .data/demo/logs; all stopped on exit."""

    def __init__(self) -> None:
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []
        (DEMO_DIR / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        log = (DEMO_DIR / "logs" / f"{name}.log").open("ab")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self._running.append((name, process))
        print(f"    started {name} (pid {process.pid}, log .data/demo/logs/{name}.log)", flush=True)

    def check(self) -> bool:
        """True while every process runs; exits the demo with a pointer to the log otherwise."""
        for name, process in self._running:
            if process.poll() is not None:
                raise SystemExit(f"error: {name} exited with {process.returncode}; see .data/demo/logs/{name}.log")
        return True

    def stop_all(self) -> None:
        """One at a time, the last started first: web app and worker, then the simulators, then the server."""
        for name, process in reversed(self._running):
            process.terminate()
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                print(f"    {name} did not stop in time; killing it", flush=True)
                process.kill()
                process.wait()


def cli(env: dict[str, str], *args: str, capture: bool = False) -> str:
    """Run the operator CLI as an operator would, echoing the command."""
    if not capture:
        print(f"    $ python starter.py {' '.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), *args],
        check=False,
        env=env,
        cwd=ROOT,
        text=True,
        capture_output=capture,
    )
    if result.returncode != 0:
        raise SystemExit(f"error: starter.py {args[0]} failed ({result.returncode}): {result.stderr or ''}")
    return result.stdout if capture else ""


async def status_of(client: Client) -> IntegrationStatus:
    status: IntegrationStatus = await client.get_workflow_handle(workflow_id_for(INTEGRATION)).query(
        IntegrationWorkflow.status
    )
    return status


async def wait_for(
    client: Client, processes: Processes, ready: Callable[[IntegrationStatus], bool], limit: float = 180.0
) -> IntegrationStatus:
    """Poll the status, printing phase changes, until `ready` (or Blocked, which ends the demo)."""
    started = time.monotonic()
    last_phase = None
    while True:
        processes.check()
        status = await status_of(client)
        if status.phase != last_phase:
            print(f"    phase: {status.phase}", flush=True)
            last_phase = status.phase
        if ready(status):
            return status
        if status.phase == Phase.BLOCKED:
            raise SystemExit(f"error: the integration is Blocked: {status.blocked}")
        if time.monotonic() - started > limit:
            raise SystemExit(f"error: still {status.phase} after {limit:.0f}s")
        await asyncio.sleep(0.5)


def in_phase(*phases: Phase) -> Callable[[IntegrationStatus], bool]:
    return lambda status: status.phase in phases


class Demo:
    def __init__(
        self,
        env: dict[str, str],
        processes: Processes,
        client: Client,
        *,
        portal: PortalHuman,
        pages: WebPagesHuman,
        received: list[Notification],
    ) -> None:
        self.env, self.processes, self.client, self.portal, self.pages = env, processes, client, portal, pages
        self.received = received  # filled by the webhook receiver
        self.links = LinkSigner.from_settings(load_settings())

    async def wait(self, ready: Callable[[IntegrationStatus], bool], limit: float = 180.0) -> IntegrationStatus:
        return await wait_for(self.client, self.processes, ready, limit)

    def link_for(self, status: IntegrationStatus) -> str:
        """The administrator's link `starter.py status` shows the operator, who passes it on."""
        action = admin_action(status)
        assert action is not None, f"no administrator step in {status.phase}"
        return self.links.url(INTEGRATION, action)

    async def paste_into_pbx(self, status: IntegrationStatus, link: str) -> None:
        assert status.app is not None
        human("opens the link, clicks 'Show the client secret' and copies it (the page shows it this once)")
        secret = await self.pages.reveal_secret(link)
        human(f"pastes client ID {status.app.client_id}, tenant ID {status.app.tenant_id} and the secret, Save")
        await self.portal.save_app_registration(status.app.client_id, status.app.tenant_id, secret)
        human(f"signs in at Microsoft as {ADMIN}, ticks 'Consent on behalf of your organization', Accept, OK")
        page = await self.portal.sign_in_and_accept(ADMIN)
        human(f"the PBX page now reads: {page['status']} (first sync: {page.get('sync', {}).get('ok', '?')})")

    async def onboard(self) -> None:
        env = self.env
        say(f"Operator: start the integration '{INTEGRATION}' (preflight, then it asks for the redirect URIs)")
        cli(env, "onboard", INTEGRATION)
        status = await self.wait(
            in_phase(Phase.WAITING_FOR_REDIRECT_URIS, Phase.WAITING_FOR_CONSENT, Phase.CONNECTED, Phase.ROTATING)
        )
        if status.phase == Phase.WAITING_FOR_REDIRECT_URIS:
            say("Human moment 1 (guide step 1): the operator sends the PBX administrator the status's link")
            cli(env, "status", INTEGRATION)
            link = self.link_for(status)
            human("PBX portal > Integrations > Collaboration > Microsoft 365 > Integrate > App Registration")
            uris = await self.portal.read_redirect_uris()
            human(f"Redirect URI:            {uris.redirect_uri}")
            human(f"Client SSO Redirect URI: {uris.sso_redirect_uri}")
            human("opens the link, pastes both into the form, 'Submit the redirect URIs'")
            await self.pages.submit_redirect_uris(link, uris)
            say("Service: register the app, SSO redirect URI, six Graph permissions + admin consent, client secret")
            status = await self.wait(in_phase(Phase.WAITING_FOR_CONSENT, Phase.CONNECTED))
        if status.phase == Phase.WAITING_FOR_CONSENT:
            say("Human moment 2 (guide step 6): paste the credentials into the PBX and sign in")
            cli(env, "status", INTEGRATION)
            link = self.link_for(status)
            await self.paste_into_pbx(status, link)
            human("back on the page: 'I have signed in and the PBX shows Connected'")
            await self.pages.confirm(link)
            await self.wait(in_phase(Phase.CONNECTED))
        say("Connected")
        cli(env, "status", INTEGRATION)

    async def rotate(self) -> None:
        """Zero-downtime rotation, with the admin slow enough for a reminder to arrive."""
        env = self.env
        status = await status_of(self.client)
        done_before = status.rotations_completed
        if status.rotation is None:
            say("Rotation: the schedule would do this every half lifetime; the operator runs one now")
            cli(env, "schedule", INTEGRATION)
            cli(env, "rotate", INTEGRATION)

        def waiting_for_pbx(s: IntegrationStatus) -> bool:
            return s.rotation is not None and s.rotation.stage == RotationStage.WAITING_FOR_PBX

        status = await self.wait(waiting_for_pbx)
        say("Service: new secret created and proven; both keys now work. The card asks the admin to paste it")
        cli(env, "status", INTEGRATION)
        say(f"The admin is busy; a reminder arrives by signed webhook (every {REMINDER_EVERY_SECONDS} s in this demo)")
        started = time.monotonic()
        while not (reminders := [n for n in self.received if n.kind == "rotation_pending" and n.link]):
            self.processes.check()
            if time.monotonic() - started > 3 * REMINDER_EVERY_SECONDS:
                raise SystemExit("error: no reminder arrived")
            await asyncio.sleep(0.5)

        say("Human: open the reminder's link, paste the new secret into the PBX and sign in again")
        link = reminders[-1].link
        assert link is not None
        await self.paste_into_pbx(status, link)
        human("back on the page: 'I pasted the new secret and signed in again'")
        await self.pages.confirm(link)
        say("Service: waits for sign-ins with the new key and none with the old, then removes only the old key")
        await self.wait(lambda s: s.rotation is None and s.rotations_completed > done_before)
        cli(env, "status", INTEGRATION)


async def play(env: dict[str, str], processes: Processes, receiver_port: int) -> None:
    client = await connect(load_settings())
    received: list[Notification] = []

    def on_notification(notification: Notification) -> None:
        received.append(notification)
        print(f"    [webhook] {notification.severity.upper()}: {notification.title}", flush=True)
        print(f"    [webhook]   next: {notification.next_action}", flush=True)
        if notification.link:
            print(f"    [webhook]   open: {notification.link}", flush=True)

    receiver = WebhookReceiver(DEMO_SIGNING_SECRET, on_notification)
    runner = web.AppRunner(receiver.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    try:
        async with (
            PortalHuman(env["YEC_YEASTAR__BASE_URL"], Path(env["YEC_ENTRA__CA_BUNDLE"])) as portal,
            WebPagesHuman.session_for() as session,
        ):
            demo = Demo(env, processes, client, portal=portal, pages=WebPagesHuman(session), received=received)
            await demo.onboard()
            await demo.rotate()
            page = await portal.page()
            print(
                f"    PBX portal: {page['status']}, syncs ok {page['sync_ok_count']}, "
                f"failed {page['sync_failure_count']}",
                flush=True,
            )
            await show_monitoring()
    finally:
        await runner.cleanup()
    say(f"Done: '{INTEGRATION}' is Connected and rotated. While the demo runs:")
    print(f"      Temporal UI       {TEMPORAL_UI}", flush=True)
    print(f"      operator console  {WEB_URL}/console  (token: .data/demo/operator.token)", flush=True)
    print(f"      worker            {METRICS_URL}/metrics  {METRICS_URL}/healthz", flush=True)


async def show_monitoring() -> None:
    """What Prometheus and an orchestrator see: the health check and the fleet's figures."""
    say("Monitoring: the worker's /healthz and a few of its /metrics (what deploy/prometheus alerts on)")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{METRICS_URL}/healthz") as answer:
            print(f"    /healthz {answer.status}: {await answer.text()}", flush=True)
        # The fleet gauges are read from Temporal every few seconds in the demo: wait for the rotated state.
        deadline = time.monotonic() + 30
        while True:
            async with session.get(f"{METRICS_URL}/metrics") as answer:
                lines = (await answer.text()).splitlines()
            shown = [line for line in lines if line.startswith(DEMO_METRICS)]
            settled = 'yec_integrations{phase="Connected"} 1.0' in shown and any(
                line.startswith("yec_rotations_total") for line in shown
            )
            if settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
    for line in shown:
        print(f"    {line}", flush=True)


@contextlib.contextmanager
def environment(extra: dict[str, str]) -> Iterator[dict[str, str]]:
    """Our settings come from the environment, for this process and every child."""
    saved = dict(os.environ)
    os.environ.update(extra)
    try:
        yield dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-running", action="store_true", help="leave server, simulators, worker running")
    args = parser.parse_args()

    for port, owner in (
        (7233, "Temporal"),
        (8233, "Temporal UI"),
        (8080, "web app"),
        (8443, "Entra simulator"),
        (8444, "Yeastar simulator"),
        (8445, "Key Vault simulator"),
        (9464, "worker's /metrics"),
        (9465, "Temporal SDK's metrics"),
    ):
        if port_open(port):
            raise SystemExit(f"error: port {port} (for the {owner}) is busy; stop whatever is using it, then re-run")

    processes = Processes()
    # SIGTERM (a closed terminal, `kill`) ends the demo like Ctrl-C does: its children are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        say("Starting the Temporal dev server (SQLite: .data/demo/temporal/temporal.sqlite)")
        # The UI decodes payloads through the web app's codec endpoint (for a signed-in operator).
        processes.start("temporal", dev_server_command(DEMO_DIR / "temporal", codec_endpoint=f"{WEB_URL}/codec"))
        wait_until("the Temporal dev server", lambda: processes.check() and port_open(7233))

        say("Starting the Entra ID and Yeastar PBX simulators (HTTPS, local CA)")
        sim_dir = DEMO_DIR / "sim"
        env_file = sim_dir / "simulators.env"
        env_file.unlink(missing_ok=True)
        processes.start(
            "simulators",
            [
                sys.executable,
                "-m",
                "simulators",
                "all",
                "--data-dir",
                str(sim_dir),
                "--replication-delay",
                "2",
                "--sync-interval",
                "3",
            ],
        )
        wait_until("the simulators", lambda: processes.check() and env_file.exists() and port_open(8444))

        receiver_port = free_port()
        extra = {
            **read_env_file(env_file),
            "YEC_ENCRYPTION_KEYS": kept("encryption.key", lambda: "demo:" + base64.b64encode(os.urandom(32)).decode()),
            # The secret store's own key: a leaked payload key must not open the stored secrets too.
            "YEC_SECRET_STORE__KEYS": kept("store.key", lambda: "store:" + base64.b64encode(os.urandom(32)).decode()),
            "YEC_WEB__BASE_URL": WEB_URL,
            "YEC_WEB__OPERATOR_TOKEN": kept("operator.token", lambda: secrets.token_urlsafe(24)),
            "YEC_WEB__TEMPORAL_UI_ORIGIN": TEMPORAL_UI,
            "YEC_DATA_DIR": str(DEMO_DIR / "service"),
            "YEC_LOG_FORMAT": "json",
            # Demo pace: reminders every few seconds, a quick cut-over check, reminders to a local webhook.
            "YEC_HUMAN_REMINDER_INTERVAL": f"PT{REMINDER_EVERY_SECONDS}S",
            "YEC_SIGN_IN_POLL_INTERVAL": "PT2S",
            "YEC_SIGN_IN_SETTLE_TIME": "PT5S",
            "YEC_METRICS__FLEET_REFRESH_INTERVAL": "PT5S",
            "YEC_NOTIFICATION_CHANNELS": json.dumps(
                [
                    {
                        "type": "webhook",
                        "name": "demo-receiver",
                        "url": f"http://127.0.0.1:{receiver_port}/",
                        "signing_secret": DEMO_SIGNING_SECRET,
                    }
                ]
            ),
        }
        with environment(extra) as env:
            say("Starting the worker and the web app")
            processes.start("worker", [sys.executable, str(ROOT / "worker.py")], env)
            processes.start("web", [sys.executable, str(ROOT / "web.py")], env)
            wait_until("the web app", lambda: processes.check() and port_open(8080))
            asyncio.run(play(env, processes, receiver_port))
            if args.keep_running:
                shell_env = write_shell_env({name: value for name, value in extra.items() if name.startswith("YEC_")})
                say("Still running (Ctrl-C to stop). The CLI in another shell, with the demo's settings:")
                print(f"      set -a; . {shell_env.relative_to(ROOT)}; set +a", flush=True)
                print("      .venv/bin/python starter.py list", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        processes.check()
                        time.sleep(1)
    finally:
        say("Stopping the web app, worker, simulators and dev server")
        processes.stop_all()


if __name__ == "__main__":
    main()
    exit_process(0)
