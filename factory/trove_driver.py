"""Drive a booted guest as Trove's TaskManager does, with Trove's own code.

Run by the Python of the Trove client venv (factory/trove_client.py), never
imported by the factory: `python trove_driver.py drive|userdata JOB.json`. It prints one JSON
object a line for each call: {"call", "ok", "seconds", "evidence"}; the
factory reads them (factory/conformance.py).

Trove's guest API class needs Trove's database for two things, the
instance's encryption key and its queue; both are overridden here (the key
comes from the guest_info.conf the factory injected, and the guest makes its
queue itself). A listener on Trove's conductor topic records the guest's
heartbeats: the status it reports is how TaskManager learns that prepare
ended, here as in a cloud.
"""

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import uuid  # noqa: E402

import oslo_messaging as messaging  # noqa: E402
from trove import rpc  # noqa: E402
from trove.common import cfg  # noqa: E402
from trove.common import context as trove_context  # noqa: E402
from trove.common import notification  # noqa: E402
from trove.common import template  # noqa: E402
from trove.common.rpc import conductor_host_serializer  # noqa: E402
from trove.extensions.common.common import populate_users, populate_validated_databases  # noqa: E402
from trove.guestagent import api as guest_api  # noqa: E402

CONF = cfg.CONF
READY = {"running", "healthy"}
FAILED = {"failed to spawn", "crashed", "guestagent error"}


def emit(call, ok, seconds, evidence):
    print(json.dumps({"call": call, "ok": bool(ok), "seconds": round(seconds, 1), "evidence": str(evidence)[:400]}),
          flush=True)


class Conductor:
    """What Trove's conductor receives from the guest, recorded."""

    target = messaging.Target(version="1.0")

    def __init__(self):
        self.statuses = []
        self.errors = []
        self.ended = False  # prepare's end notice: it sends it last
        self.lock = threading.Lock()

    def heartbeat(self, context, instance_id, payload, sent=None):
        with self.lock:
            self.statuses.append(payload.get("service_status"))

    def notify_exc_info(self, context, serialized_notification, message, exception):
        with self.lock:
            self.errors.append(f"{message}: {exception}")

    def notify_end(self, context, serialized_notification, **kwargs):
        with self.lock:
            self.ended = True

    def report_root(self, context, instance_id, user=None):
        pass

    def update_backup(self, context, instance_id, backup_id, sent=None, **kwargs):
        pass


def setup(job):
    # A trove.conf, as TaskManager reads its own: oslo.messaging registers
    # its options only when the transport is made.
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write("[DEFAULT]\n"
               f"transport_url = {job['transport_url']}\n"
               "control_exchange = trove\n"
               "agent_call_low_timeout = 15\n"
               f"agent_call_high_timeout = {job['call_timeout']}\n"
               "[upgrade_levels]\n"
               f"guestagent = {job['rpc_cap']}\n")
    conf.close()
    CONF([], project="trove", default_config_files=[conf.name])
    os.unlink(conf.name)
    rpc.set_defaults(control_exchange="trove")
    rpc.init(CONF)
    key = job["key"]
    # The conductor side finds the instance's key in Trove's database.
    conductor_host_serializer.get_instance_encryption_key = lambda instance_id: key

    class Guest(guest_api.API):
        def get_client(self, target, version_cap, serializer=None):
            return rpc.get_client(target, key=key, version_cap=version_cap, serializer=serializer)

        def _create_guest_queue(self):
            pass

    ctx = trove_context.TroveContext(user_id="factory-verify", project_id="factory-verify",
                                     request_id=f"req-{uuid.uuid4()}")
    ctx.notification = notification.DBaaSInstanceCreate(
        ctx, request_id=ctx.request_id, server_type="taskmanager", client_ip="127.0.0.1",
        server_ip="127.0.0.1", tenant_id=ctx.project_id)
    return Guest(ctx, job["guest_id"])


def listen(conductor):
    target = messaging.Target(topic=CONF.conductor_queue, server="factory-verify")
    server = rpc.get_server(target, [conductor], key=None,
                            secure_serializer=conductor_host_serializer.ConductorHostSerializer)
    server.start()
    return server


def timed(call, fn, check=lambda r: (True, r)):
    """Run one call; returns (passed, result)."""
    began = time.monotonic()
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - every failure is evidence
        emit(call, False, time.monotonic() - began, f"{type(e).__name__}: {getattr(e, 'message', e)}")
        return False, None
    ok, evidence = check(result)
    emit(call, ok, time.monotonic() - began, evidence)
    return ok, result


def wait_for_ping(guest, seconds):
    began = time.monotonic()
    last = ""
    while time.monotonic() - began < seconds:
        try:
            guest.rpc_ping()
            emit("rpc_ping", True, time.monotonic() - began, "the agent answered")
            return True
        except Exception as e:  # noqa: BLE001
            last = f"{type(e).__name__}"
            time.sleep(3)
    emit("rpc_ping", False, time.monotonic() - began, f"no answer from guestagent.{guest.id} in {seconds}s ({last})")
    return False


def config_contents(job):
    """The datastore's config as TaskManager renders it, from the template of
    the agent's release."""
    import jinja2

    # Trove's own environment (its filters and globals), reading the agent
    # release's templates.
    template.ENV = template.ENV.overlay(loader=jinja2.FileSystemLoader(job["template_dir"]))
    version = types.SimpleNamespace(datastore_name=job["datastore"], manager=job["datastore"],
                                    name=job["version"], version=job["version"])
    flavor = {"ram": job["memory_mb"], "vcpus": 2, "disk": 0, "id": "factory-verify"}
    rendered = template.SingleInstanceConfigTemplate(version, flavor, job["guest_id"])
    return rendered.render()


def wait_for_prepare(conductor, seconds, first_heartbeat=180):
    """Until the guest reports a final status. An agent sends `building` as
    soon as prepare begins; one that sends nothing never began it (a guest
    that cannot decrypt the call, because its key differs, still answers
    rpc_ping: Trove's serializer hands undecryptable messages on as they are,
    and prepare then fails before its first heartbeat)."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        with conductor.lock:
            statuses, errors, ended = list(conductor.statuses), list(conductor.errors), conductor.ended
        # A current agent reports healthy as soon as the database runs, then
        # creates the databases and users; prepare is over at its end notice.
        failed = errors or any(s in FAILED for s in statuses)
        if failed or ended:
            ok = not failed and any(s in READY for s in statuses)
            emit("prepare", ok, time.monotonic() - began,
                 f"heartbeats {' > '.join(dict.fromkeys(statuses))}" + ("; end notice received" if ended else "")
                 + (f"; error: {errors[-1]}" if errors else ""))
            return ok
        if not statuses and time.monotonic() - began > first_heartbeat:
            emit("prepare", False, time.monotonic() - began,
                 f"the guest sent no heartbeat in {first_heartbeat}s: prepare never began in the agent "
                 "(does the guest hold the instance key Trove encrypts with?)")
            return False
        time.sleep(2)
    emit("prepare", False, time.monotonic() - began,
         f"no final status in {seconds}s (heartbeats: {' > '.join(dict.fromkeys(statuses)) or 'none'})")
    return False


def names(listing):
    items = listing[0] if isinstance(listing, (list, tuple)) and listing and isinstance(listing[0], list) else listing
    return sorted(i.get("_name") or i.get("name") for i in items or [])


def login(job):
    """The datastore's own client, from the host, as the created user."""
    ds, port = job["datastore"], job["host_port"]
    if ds in ("mysql", "mariadb", "percona"):
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=port, user=job["user"], password=job["password"],
                               database=job["database"], connect_timeout=20)
        with conn.cursor() as cur:
            cur.execute("select 40+2")
            return cur.fetchone()[0]
    if ds == "postgresql":
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user=job["user"], password=job["password"],
                             dbname=job["database"], connect_timeout=20) as conn:
            return conn.execute("select 40+2").fetchone()[0]
    if ds == "redis":
        import redis

        return redis.Redis(host="127.0.0.1", port=port, password=job.get("redis_password"),
                           socket_timeout=20).eval("return 40+2", 0)
    raise ValueError(f"no client for {ds}")


def userdata(job):
    """User data as TaskManager writes it when it delivers the config files
    by cloud-config, merged with the operator's own user data (here: the
    verify probe, written and run by cloud-config), with Trove's own code."""
    import yaml
    from trove.instance.models import BaseInstance

    CONF([], project="trove", default_config_files=[])
    CONF.set_override("injected_config_owner", job["owner"])
    CONF.set_override("injected_config_group", job["owner"])
    operator = "#cloud-config\n" + yaml.safe_dump({
        "write_files": [{"path": "/usr/local/sbin/factory-verify-probe", "permissions": "0755",
                         "content": job["probe"]}],
        "runcmd": [["/usr/local/sbin/factory-verify-probe"]],
    })
    trove_part = BaseInstance.prepare_cloud_config(None, job["files"])
    sys.stdout.write(BaseInstance.combine_cloudinit_userdata(trove_part, operator))


def main():
    mode, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        job = json.load(f)
    if mode == "userdata":
        userdata(job)
        return
    guest = setup(job)
    conductor = Conductor()
    server = listen(conductor)
    try:
        run(job, guest, conductor)
    finally:
        server.stop()
        server.wait()


def run(job, guest, conductor):
    if not wait_for_ping(guest, job["boot_wait"]):
        return
    with_users = job["datastore"] not in ("redis",)
    databases = populate_validated_databases([{"name": job["database"]}]) if with_users else None
    users = populate_users([{"name": job["user"], "password": job["password"],
                             "databases": [{"name": job["database"]}]}]) if with_users else None
    rendered, contents = timed("render config", lambda: config_contents(job),
                               lambda c: (bool(c), f"{len(c.splitlines())} lines of {job['datastore']}'s template"))
    if not rendered:
        return
    mount_point = CONF.get(job["datastore"]).mount_point
    sent, _ = timed("prepare sent", lambda: guest.prepare(
        job["memory_mb"], job["packages"], databases, users, device_path=job["device_path"], mount_point=mount_point,
        config_contents=contents, ds_version=job["version"]), lambda r: (True, f"cast, volume {job['device_path']} at {mount_point}"))
    if not sent:
        return
    if not wait_for_prepare(conductor, job["prepare_wait"], job.get("first_heartbeat", 180)):
        return
    if with_users:
        timed("list_databases", guest.list_databases,
              lambda r: (job["database"] in names(r), f"databases {names(r)}"))
        timed("list_users", guest.list_users,
              lambda r: (job["user"] in names(r), f"users {names(r)}"))
        extra = job["database"] + "_second"
        timed("create_database", lambda: guest.create_database(populate_validated_databases([{"name": extra}])),
              lambda r: (True, f"asked for {extra}"))
        timed("create_database listed", lambda: wait_listed(guest, extra),
              lambda r: (extra in r, f"databases {r}"))
    else:
        # Datastores without databases and users offer their root account.
        timed("enable_root_with_password", lambda: guest.enable_root_with_password(job["password"]),
              lambda r: (True, "authentication on, with the password Trove sent"))
        job["redis_password"] = job["password"]
    timed("get_volume_info", guest.get_volume_info,
          lambda r: (bool(r) and float(r.get("total", 0)) > 0,
                     f"total {r.get('total')} GB, used {r.get('used')} GB" if r else "no answer"))
    who = job["user"] if with_users else "root"
    timed("login from the host", lambda: login(job),
          lambda r: (str(r) == "42", f"{who}@127.0.0.1:{job['host_port']} select 40+2 -> {r}"))
    timed("restart", guest.restart, lambda r: (True, "the agent restarted the datastore"))
    timed("rpc_ping after restart", guest.rpc_ping, lambda r: (True, "the agent answered"))
    timed("login after restart", lambda: retry(lambda: login(job), 60),
          lambda r: (str(r) == "42", f"select 40+2 -> {r}"))


def wait_listed(guest, name, seconds=60):
    began = time.monotonic()
    while True:
        listed = names(guest.list_databases())
        if name in listed or time.monotonic() - began > seconds:
            return listed
        time.sleep(2)


def retry(fn, seconds):
    began = time.monotonic()
    while True:
        try:
            return fn()
        except Exception:  # noqa: BLE001
            if time.monotonic() - began > seconds:
                raise
            time.sleep(3)


if __name__ == "__main__":
    main()
