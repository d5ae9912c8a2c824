"""Running `mediaworker serve` in tests, publishing jobs with pika and looking into queues."""
import atexit
import ctypes
import json
import os
import signal
import subprocess
import time
import uuid

import rabbitmq  # noqa: F401  (puts Debian's pika on the path when needed)
import pika

import mwtest

_instances = [0]
_running = []


def _die_with_test():
    """Runs in the child before exec: a test killed by a timeout takes its workers with it."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@atexit.register
def _kill_leftovers():
    """A failed scenario may leave its worker running; the test run must not leave processes behind."""
    for proc in _running:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Worker:
    """One `mediaworker serve` process with its environment; log lines are kept in a file."""

    def __init__(self, broker, data_service, input_root, output_root, name="worker", prefix=(), **env):
        _instances[0] += 1
        self.log_path = os.path.join(mwtest.WORKDIR, f"{name}-{broker.port}-{_instances[0]}.log")
        if os.path.exists(self.log_path):
            os.unlink(self.log_path)
        self.env = dict(os.environ)
        self.env.update({
            "RABBITMQ_URL": broker.url,
            "POSTGRES_DATA_SERVICE_URL": data_service.url,
            "MW_INPUT_ROOT": input_root,
            "MW_OUTPUT_ROOT": output_root,
            "MW_SCRATCH_DIR": os.path.join(output_root, ".scratch"),
            "MW_LOG_FORMAT": "json",
            "MW_LOG_LEVEL": "info",
            "MW_SLOTS": "2",
            "MW_RETRY_DELAYS": "1,2",
            "HTTP_CLIENT_TIMEOUT": "3",
            "HTTP_CLIENT_RETRIES": "2",
            "MW_HEARTBEAT": "5",
            "MW_SHUTDOWN_GRACE": "10",
            "MW_DEFAULT_OPERATIONS": "probe",
            "MW_HTTP_LISTEN": "",
        })
        self.env.update({k: str(v) for k, v in env.items()})
        self.proc = None
        self.prefix = list(prefix)     # e.g. setpriv arguments the worker runs under

    def start(self, ready="consuming"):
        """Starts the worker and waits until a log line contains `ready` (the topology is declared and it
        consumes, so messages published now are routed); ready=None does not wait."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.prefix + [mwtest.BIN, "serve"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_test)
        _running.append(self.proc)
        deadline = time.monotonic() + 20
        while ready and time.monotonic() < deadline and self.alive():
            if any(ready in l.get("msg", "") for l in self.log_lines()):
                break
            time.sleep(0.05)
        return self

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=60):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            code = f"hung (killed), {code}"
        self.log.close()
        return code

    def wait(self, timeout=60):
        """Waits for an exit already under way (no signal sent); returns the exit code."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = f"hung (killed), {self.proc.wait()}"
        self.log.close()
        return code

    def alive(self):
        return self.proc.poll() is None

    def job_pids(self):
        """Pids of this worker's job processes (children running `job-process`)."""
        pids = []
        try:
            children = open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read().split()
        except OSError:
            children = []
        # Children are forked by slot threads, so look through every thread's children.
        try:
            for task in os.listdir(f"/proc/{self.proc.pid}/task"):
                children += open(f"/proc/{self.proc.pid}/task/{task}/children").read().split()
        except OSError:
            pass
        for pid in set(children):
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"job-process" in cmdline:
                pids.append(int(pid))
        return sorted(pids)

    def log_lines(self):
        out = []
        with open(self.log_path, "rb") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"raw": line.decode(errors="replace")})
        return out


def publish(broker, body, message_id=None, request_id=None, headers=None, exchange="media",
            routing_key="media.process"):
    """Publishes one persistent message (body: dict or raw bytes/str) and returns its message id."""
    message_id = message_id or uuid.uuid4().hex
    all_headers = dict(headers or {})
    if request_id:
        all_headers["X-Request-ID"] = request_id
    if isinstance(body, dict):
        body = json.dumps(body)
    conn = broker.connection()
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, routing_key, body,
                              pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                   message_id=message_id, headers=all_headers))
    finally:
        conn.close()
    return message_id


def declare(broker, retry_delays=(1, 2), queue="media.process", exchange="media"):
    """Declares the topology the way the worker does, so tests can publish before a worker started."""
    conn = broker.connection()
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange, "direct", durable=True)
        ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "classic"})
        ch.queue_bind(queue, exchange, queue)
    finally:
        conn.close()


def queue_depth(broker, queue):
    conn = broker.connection()
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker:
        return None
    finally:
        if conn.is_open:
            conn.close()


def take_all(broker, queue):
    """Removes and returns every message of queue as (properties, body) pairs."""
    conn = broker.connection()
    out = []
    try:
        ch = conn.channel()
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            out.append((props, body))
    finally:
        conn.close()
    return out


def wait_until(predicate, timeout=30, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not met in {timeout} s")
