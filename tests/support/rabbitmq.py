"""A private RabbitMQ node for tests and the demo.

Each node gets its own name, AMQP and distribution ports, Mnesia and log directories and HOME (so its
Erlang cookie never meets a system one), and no plugins. It runs the broker script directly, not the
Debian wrapper that switches to the rabbitmq user, so it works the same as root in CI and as a user.
Readiness is an AMQP handshake, not rabbitmq-diagnostics, so no epmd lookup or cookie is involved.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

try:
    import pika  # noqa: F401
except ImportError:
    # Debian's python3-pika lives in the system site; a pyenv or venv interpreter does not see it.
    sys.path.append("/usr/lib/python3/dist-packages")
    import pika  # noqa: F401

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A free port below the kernel's ephemeral range. A port from that range can be taken while the broker
    is down by a client reconnecting to it: connecting to a local port nobody listens on may pick that
    same port as its source and connect to itself, and the restarted broker then fails with EADDRINUSE."""
    low, high = _ephemeral_range()
    top, bottom = (low - 1, 10000) if low > 11000 else (65535, high + 1)
    for _ in range(200):
        port = random.randint(bottom, top)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port found in {bottom}-{top}")


class RabbitMQ:
    """start() / stop() / restart() a private node; url is its amqp:// URL (guest works on localhost)."""

    def __init__(self, base_dir, port=None, name=None, cookie=None):
        """name: the node name's first part (mwtest-<port> by default); cookie: an Erlang cookie shared
        with other nodes of a cluster (each node gets its own otherwise)."""
        self.port = port or free_port()
        self.dist_port = free_port()
        self.base = os.path.join(base_dir, f"rabbitmq-{self.port}")
        self.node = f"{name or 'mwtest-%d' % self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.cookie = cookie
        self.proc = None

    def _env(self):
        env = dict(os.environ)
        conf = os.path.join(self.base, "rabbitmq")
        with open(conf + ".conf", "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.port)
            f.write("loopback_users = none\n")
            # Tests fill disks and memory on purpose elsewhere; the broker must not block publishers then.
            f.write("disk_free_limit.absolute = 1MB\n")
            f.write("vm_memory_high_watermark.relative = 0.8\n")
        plugins = os.path.join(self.base, "enabled_plugins")
        with open(plugins, "w") as f:
            f.write("[].\n")
        env.update({
            "HOME": self.base,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.base, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.base, "log"),
            "RABBITMQ_CONFIG_FILE": conf,
            "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,
            "RABBITMQ_PLUGINS_EXPAND_DIR": os.path.join(self.base, "plugins-expand"),
            "RABBITMQ_PID_FILE": os.path.join(self.base, "pid"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.base, "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.base, "advanced.config"),
            "RABBITMQ_LOGS": os.path.join(self.base, "log", "node.log"),
        })
        open(env["RABBITMQ_CONF_ENV_FILE"], "a").close()
        # Node names end in @localhost; a minimal system (a fresh container, a debootstrap root) may have no
        # /etc/hosts to resolve it, and Erlang's distribution then refuses to start. Its own resolver
        # configuration states the one name we need.
        inetrc = os.path.join(self.base, "erl_inetrc")
        with open(inetrc, "w") as f:
            f.write('{host, {127,0,0,1}, ["localhost"]}.\n{lookup, [file, native]}.\n')
        env["ERL_INETRC"] = inetrc
        if self.cookie:
            # The node and rabbitmqctl both read $HOME/.erlang.cookie; it must not be readable by others.
            path = os.path.join(self.base, ".erlang.cookie")
            if os.path.exists(path):
                os.chmod(path, 0o600)
            with open(path, "w") as f:
                f.write(self.cookie)
            os.chmod(path, 0o400)
        return env

    def ctl(self, *args, timeout=60, tool="rabbitmqctl"):
        """Runs rabbitmqctl (or another CLI tool) against this node; returns the CompletedProcess."""
        return subprocess.run([os.path.join(os.path.dirname(SERVER), tool), "-n", self.node, *args],
                              env=self._env(), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def start(self, timeout=60):
        os.makedirs(os.path.join(self.base, "log"), exist_ok=True)
        env = self._env()
        self.log = open(os.path.join(self.base, "console.log"), "ab")
        self.proc = subprocess.Popen([SERVER], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.base)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                # The test's directory may be gone by the time someone reads the failure: say why here.
                with open(os.path.join(self.base, "console.log"), errors="replace") as f:
                    tail = "".join(f.readlines()[-8:])
                raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}; see {self.base}:\n{tail}")
            if self.ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"rabbitmq-server did not become ready in {timeout} s; see {self.base}")

    def ready(self):
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=2"))
        except Exception:
            return False
        conn.close()
        return True

    def stop(self, timeout=30, sig=signal.SIGTERM):
        """Sends sig to the node's process group and waits for it (SIGKILL after timeout), then for epmd."""
        if not self.proc:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # epmd is shared by every Erlang node on the machine and outlives ours; it is left running. A restart
        # under the same name must wait until epmd has let go of it, or the new node refuses to start.
        self.proc = None
        self.log.close()
        self._wait_unregistered()

    def _wait_unregistered(self, timeout=15):
        short = self.node.split("@")[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                names = subprocess.run(["epmd", "-names"], capture_output=True, text=True, timeout=5).stdout
            except (OSError, subprocess.TimeoutExpired):
                return
            if f"name {short} at port" not in names:
                return
            time.sleep(0.2)

    def kill(self):
        """SIGKILL, as a crash or a lost machine would: no goodbye to clients or to the other nodes."""
        self.stop(sig=signal.SIGKILL)

    def restart(self, down_s=0.0):
        self.stop()
        time.sleep(down_s)
        return self.start()

    def connection(self):
        return pika.BlockingConnection(pika.URLParameters(self.url))

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class Cluster:
    """Three (or n) nodes rabbit-<letter>-<port>@localhost on loopback with a shared cookie, joined with
    rabbitmqctl join_cluster to the first one. urls is the comma-separated list a worker takes."""

    def __init__(self, base_dir, size=3):
        cookie = "MWTESTCOOKIE%d" % free_port()
        ports = [free_port() for _ in range(size)]
        self.nodes = [RabbitMQ(base_dir, port=p, name=f"rabbit-{chr(ord('a') + i)}-{p}", cookie=cookie)
                      for i, p in enumerate(ports)]
        self.urls = ",".join(n.url for n in self.nodes)

    def start(self, timeout=90):
        import threading
        errors = []

        def boot(node):
            try:
                node.start(timeout=timeout)
            except Exception as e:  # reported below, after every thread ended
                errors.append(e)

        threads = [threading.Thread(target=boot, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        first = self.nodes[0]
        for node in self.nodes[1:]:
            for args in (("stop_app",), ("join_cluster", first.node), ("start_app",)):
                out = node.ctl(*args)
                if out.returncode != 0:
                    raise RuntimeError(f"{node.node}: rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}")
        return self

    def running_nodes(self, via):
        out = via.ctl("eval", "rabbit_nodes:all_running().")
        return out.stdout

    def node_named(self, name):
        return next(n for n in self.nodes if n.node == name)

    def cleanup(self):
        for n in self.nodes:
            n.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
