"""The deployment files under docker/, checked as far as a machine without a container engine or a cluster can.

- docker/Dockerfile: the build stage installs exactly the build list of scripts/install-deps; the runtime
  stages cover every shared library the built binary links (ldd -> dpkg -S -> Debian packages, through the
  runtime packages' own dependencies); non-root numeric USER, tini ENTRYPOINT, HEALTHCHECK on /healthz.
- docker/compose.yml and docker/k8s/*.yaml parse; every environment variable given to a worker is one that
  `mediaworker config` prints, and the binary accepts the resulting configuration. Compose's launcher of the
  stand-in Data Service serves on every interface (run here when tests/support/data_service.py exists).
- Kubernetes: probes on /healthz and /readyz at the port of MW_HTTP_LISTEN, a termination grace longer than
  the drain plus the last report, resources that follow from MW_JOB_PROCESSES x MW_JOB_MEMORY_MB and the codec
  threads, the restricted securityContext, an emptyDir scratch, a GPU Deployment on nvidia.com/gpu with
  MW_HWACCEL=cuda, KEDA on the rabbitmq trigger for the worker's queue, PodDisruptionBudgets.
- When kubectl is installed, `kubectl kustomize docker/k8s` renders, in one namespace, with registry images.
- The deployment docs' relative links and anchors resolve.
"""
import glob
import json
import os
import re
import select
import shlex
import shutil
import subprocess
import urllib.request

import yaml

from mwtest import BIN, check, finish

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DOCKER = os.path.join(ROOT, "docker")
K8S = os.path.join(DOCKER, "k8s")

# Variables read by the container runtime, not by the worker.
RUNTIME_VARIABLES = {"NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"}
# What the supervisor itself may use beyond its job processes (docker/k8s/deployment.yaml explains it).
SUPERVISOR_MIB = 256
# Libraries of the sanitizer build that ctest may be running; a release image never links them.
SANITIZER_PACKAGE = re.compile(r"^lib(asan|ubsan|lsan|tsan)\d*$")


def worker_config(env):
    """`mediaworker config` under exactly this environment: (exit code, parsed JSON or None, stderr)."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if name in os.environ:
            full[name] = os.environ[name]
    full.update({k: str(v) for k, v in env.items() if k not in RUNTIME_VARIABLES})
    proc = subprocess.run([BIN, "config"], capture_output=True, text=True, timeout=60, env=full)
    try:
        parsed = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        parsed = None
    return proc.returncode, parsed, proc.stderr


DEFAULTS = worker_config({})[1] or {}
KNOWN_VARIABLES = set(DEFAULTS)


def check_variables(where, names):
    unknown = sorted(set(names) - KNOWN_VARIABLES - RUNTIME_VARIABLES)
    check(not unknown, f"{where}: variables that `mediaworker config` does not know: {unknown}")


def effective_config(where, env):
    code, config, err = worker_config(env)
    check(code == 0 and config is not None, f"{where}: the worker refuses this configuration: {err.strip()}")
    return config or DEFAULTS


def listen_port(config):
    host, _, port = config["MW_HTTP_LISTEN"].rpartition(":")
    return host, int(port) if port.isdigit() else None


def quantity(text, binary_unit=1):
    """Kubernetes quantity as a number: "4352Mi" -> 4352 (in MiB with binary_unit=1 << 20), "500m" -> 0.5."""
    text = str(text)
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9,
             "m": 1e-3}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    if not match or (match.group(2) and match.group(2) not in units):
        check(False, f"unreadable quantity {text!r}")
        return 0
    return float(match.group(1)) * units.get(match.group(2), 1) / binary_unit


# ---- scripts/install-deps and the Dockerfile --------------------------------------------------------------

def install_deps_sections():
    """{"build": [...], "tests": [...]} from the packages=( ... ) array, split at its "# <section>" comments."""
    with open(os.path.join(ROOT, "scripts", "install-deps")) as f:
        text = f.read()
    body = re.search(r"^packages=\(\n(.*?)^\)", text, re.S | re.M).group(1)
    sections, current = {}, None
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("#"):
            current = line[1:].split()[0]
            sections[current] = []
        elif line:
            sections[current].extend(line.split())
    return sections


def dockerfile_stages(path):
    """Stages in order: [{"name", "base", "instructions": [(KEYWORD, arguments)]}], continuations joined."""
    stages, logical = [], ""
    with open(path) as f:
        lines = f.read().splitlines()
    instructions = []
    for line in lines:
        if line.strip().startswith("#") or (not line.strip() and not logical):
            continue
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        keyword, _, arguments = logical.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        logical = ""
    for keyword, arguments in instructions:
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append({"name": name, "base": words[0], "instructions": []})
        else:
            stages[-1]["instructions"].append((keyword, arguments))
    return stages


def stage_chain(stages, name):
    """The stage and every stage it is built FROM, base first."""
    by_name = {s["name"]: s for s in stages}
    chain = []
    while name in by_name:
        chain.insert(0, by_name[name])
        name = by_name[name]["base"]
    return chain


def apt_packages(instructions):
    packages = []
    for keyword, arguments in instructions:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", arguments):
            words = shlex.split(command)
            if "apt-get" in words and "install" in words:
                check("--no-install-recommends" in words, f"apt-get install without recommends: {command}")
                packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
        if "apt-get update" in arguments:
            check("rm -rf /var/lib/apt/lists" in arguments, "the package lists are removed in the same layer")
    return packages


def installed_packages():
    """({name: [dependency names]} of installed packages, the names Debian's base image has: essential or
    required)."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Status}\t${Essential}\t${Priority}\t"
                          "${Depends}, ${Pre-Depends}\n"], capture_output=True, text=True, check=True).stdout
    depends, base = {}, set()
    for line in out.splitlines():
        name, status, essential, priority, relations = line.split("\t")
        if not status.endswith(" installed"):
            continue
        # "a (>= 1) | b:any, c" -> every alternative's name; the closure follows those that are installed.
        depends[name] = [alternative.strip().split(" ")[0].split(":")[0]
                         for clause in relations.split(",") for alternative in clause.split("|")
                         if alternative.strip()]
        if essential == "yes" or priority == "required":
            base.add(name)
    return depends, base


def dependency_closure(roots, depends):
    """Every installed package reachable from roots through Depends and Pre-Depends."""
    seen, todo = set(), [p for p in roots if p in depends]
    while todo:
        package = todo.pop()
        if package not in seen:
            seen.add(package)
            todo += [d for d in depends[package] if d in depends and d not in seen]
    return seen


def linked_packages():
    """Debian packages of the shared libraries the binary under test loads (ldd, so transitively)."""
    out = subprocess.run(["ldd", BIN], capture_output=True, text=True, check=True).stdout
    libraries = [m.group(1) for m in (re.search(r"(/\S+\.so[^\s]*)", line) for line in out.splitlines()) if m]
    # Usrmerge: ldd may say /lib/x86_64-linux-gnu/... where dpkg recorded /usr/lib/..., or the reverse.
    candidates = {lib: {lib, os.path.realpath(lib), "/usr" + lib, lib[4:] if lib.startswith("/usr/") else lib}
                  for lib in libraries}
    # One dpkg -S for all of them (it is slow per call); unowned paths only add errors on stderr.
    proc = subprocess.run(["dpkg", "-S"] + sorted(set().union(*candidates.values())), capture_output=True,
                          text=True)
    owners = {}
    for line in proc.stdout.splitlines():
        packages, _, path = line.partition(": ")
        owners[path.strip()] = [p.strip().split(":")[0] for p in packages.split(",")]
    found, unowned = set(), []
    for lib, paths in candidates.items():
        owned = [owners[p] for p in paths if p in owners]
        if owned:
            found.update(owned[0])
        else:
            unowned.append(lib)
    check(libraries and not unowned, f"libraries the binary links that no Debian package owns: {unowned}")
    return found


def test_dockerfile():
    stages = dockerfile_stages(os.path.join(DOCKER, "Dockerfile"))
    names = [s["name"] for s in stages]
    check({"build", "runtime-base", "runtime", "gpu"} <= set(names), f"Dockerfile stages: {names}")
    check(names[-1] == "runtime", "the default (last) stage is the CPU runtime image")
    check(all(s["base"] == "debian:bookworm-slim" or s["base"] in names for s in stages),
          "every stage starts from debian:bookworm-slim or another stage")

    sections = install_deps_sections()
    build = stage_chain(stages, "build")
    build_packages = apt_packages(sum((s["instructions"] for s in build), []))
    check(sorted(build_packages) == sorted(sections.get("build", [])),
          f"Dockerfile build packages {sorted(build_packages)} != scripts/install-deps build list "
          f"{sorted(sections.get('build', []))}")

    runtime = stage_chain(stages, "runtime")
    runtime_instructions = sum((s["instructions"] for s in runtime), [])
    runtime_packages = apt_packages(runtime_instructions)
    check(not [p for p in runtime_packages if p.endswith("-dev") or p in ("build-essential", "cmake")],
          f"no build tools in the runtime image: {runtime_packages}")
    check(set(apt_packages(sum((s["instructions"] for s in stage_chain(stages, "gpu")), []))) ==
          set(runtime_packages), "the GPU image has the same packages as the CPU image")

    depends, base = installed_packages()
    missing_here = [p for p in runtime_packages if p not in depends]
    covered = dependency_closure(list(runtime_packages) + sorted(base), depends)
    linked = {p for p in linked_packages() if not SANITIZER_PACKAGE.match(p)}
    uncovered = sorted(linked - covered)
    check(not uncovered, f"the runtime image lacks the packages of linked libraries {uncovered} "
                         f"(runtime packages not installed on this machine, so not followed: {missing_here})")
    for lib in ("libavformat59", "libavcodec59", "libavutil57", "libswscale6", "libswresample4", "libavfilter8",
                "librabbitmq4", "libcurl4", "libcjson1", "libmicrohttpd12", "libseccomp2"):
        check(lib not in linked or lib in runtime_packages, f"{lib} is named in the runtime stage")

    users = [a for k, a in runtime_instructions if k == "USER"]
    user = users[-1] if users else "root"
    uid = user.split(":")[0]
    check(uid.isdigit() and int(uid) != 0, f"runtime USER is a numeric non-root uid, got {user!r}")
    entrypoints = [a for k, a in runtime_instructions if k == "ENTRYPOINT"]
    entrypoint = json.loads(entrypoints[-1]) if entrypoints else []
    check(entrypoint[:2] == ["/usr/bin/tini", "--"] and entrypoint[-1].endswith("/mediaworker"),
          f"ENTRYPOINT runs the worker under tini (exec form, no -g): {entrypoint}")
    check("tini" in runtime_packages, "tini is installed in the runtime image")
    healthchecks = [a for k, a in runtime_instructions if k == "HEALTHCHECK"]
    check(healthchecks and "/healthz" in healthchecks[-1] and "curl" in healthchecks[-1]
          and "curl" in runtime_packages, f"HEALTHCHECK polls /healthz with the installed curl: {healthchecks}")

    env = {}
    for keyword, arguments in runtime_instructions:
        if keyword == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                env[name] = value
    check_variables("Dockerfile runtime ENV", env)
    config = effective_config("Dockerfile runtime ENV", env)
    host, port = listen_port(config)
    check(host not in ("127.0.0.1", "localhost") and f"EXPOSE {port}" in
          [f"{k} {a}" for k, a in runtime_instructions], "the health endpoint listens beyond loopback and is EXPOSEd")
    volumes = [a for k, a in runtime_instructions if k == "VOLUME"]
    check(any(config["MW_SCRATCH_DIR"] in v for v in volumes), "the scratch directory is a VOLUME")

    gpu_env = " ".join(a for k, a in stage_chain(stages, "gpu")[-1]["instructions"] if k == "ENV")
    capabilities = re.search(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", gpu_env)
    check(capabilities and {"compute", "video", "utility"} <= set(capabilities.group(1).split(",")),
          "the GPU image asks the NVIDIA runtime for compute, video and utility")

    copied = [a.split()[0] for s in build for k, a in s["instructions"] if k == "COPY" and "--from" not in a]
    check(all(os.path.exists(os.path.join(ROOT, c)) for c in copied), f"COPY sources exist: {copied}")
    with open(os.path.join(DOCKER, "Dockerfile.dockerignore")) as f:
        kept = {line[1:].rstrip("/") for line in f.read().splitlines() if line.startswith("!")}
    check(all(c.rstrip("/") in kept for c in copied), "the .dockerignore keeps what the build copies")


# ---- compose ----------------------------------------------------------------------------------------------

def mounts(service):
    """{container path: (source, read_only)} of a compose service's short-syntax volumes."""
    result = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        result[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
    return result


def check_stand_in_launcher(service):
    """Runs compose's launcher of the stand-in Data Service here (port 0, reports to a temporary file) and
    sends it one report on an address other than 127.0.0.1: it must listen on every interface."""
    work = os.path.join(os.environ.get("MW_TEST_WORKDIR", "/tmp"), "deploy-stand-in")
    os.makedirs(work, exist_ok=True)
    reports = os.path.join(work, "reports.jsonl")
    if os.path.exists(reports):
        os.remove(reports)
    env = dict(os.environ, SUPPORT_DIR=os.path.join(ROOT, "tests", "support"), PORT="0", REPORTS=reports)
    # Linux answers the whole of 127/8 on loopback: a server bound to 127.0.0.1 refuses 127.0.0.2, one bound
    # to every interface (what the other containers need) accepts it.
    address = "127.0.0.2"
    proc = subprocess.Popen(service["command"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        port = re.search(r"port (\d+)", line)
        check(port is not None, f"the stand-in launcher starts: {line!r}")
        if not port:
            return
        request = urllib.request.Request(f"http://{address}:{port.group(1)}/api/v1/users/42/files", method="PATCH",
                                         data=b'{"new_file": {"job_id": "deploy-test"}}',
                                         headers={"Content-Type": "application/json"})
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(request, timeout=10) as response:
            check(response.status == 200, f"the stand-in answers a report: {response.status}")
        with open(reports) as f:
            check("deploy-test" in f.read(), "the stand-in records the report in REPORTS")
    except OSError as e:
        check(False, f"the stand-in launched as compose does is not reachable on {address}: {e}")
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_compose():
    with open(os.path.join(DOCKER, "compose.yml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    check(services.get("rabbitmq", {}).get("image", "").startswith("rabbitmq:3-management"),
          "compose runs rabbitmq:3-management")
    stand_in = services.get("data-service", {})
    check(any(v.startswith("../tests/support:") for v in stand_in.get("volumes", [])),
          "compose mounts the test suite's support directory into the stand-in Data Service")
    if os.path.exists(os.path.join(ROOT, "tests", "support", "data_service.py")):
        check_stand_in_launcher(stand_in)
    else:
        print("note: tests/support/data_service.py is not in this tree; the stand-in launcher is not run")

    stages = [s["name"] for s in dockerfile_stages(os.path.join(DOCKER, "Dockerfile"))]
    workers = {name: s for name, s in services.items() if s.get("build", {}).get("dockerfile") == "docker/Dockerfile"}
    check(len(workers) >= 2, f"compose runs at least two workers: {sorted(workers)}")
    shared = set()
    scratch = []
    for name, service in workers.items():
        where = f"compose service {name}"
        env = service.get("environment", {})
        check_variables(where, env)
        config = effective_config(where, env)
        check(service["build"].get("target") in stages, f"{where}: builds a stage of the Dockerfile")
        check(service.get("command", [None])[0] == "serve", f"{where}: runs `mediaworker serve`")
        volumes = mounts(service)
        uploads = volumes.get(config["MW_INPUT_ROOT"])
        outputs = volumes.get(config["MW_OUTPUT_ROOT"])
        check(uploads is not None and uploads[1], f"{where}: uploads mounted read-only at MW_INPUT_ROOT")
        check(outputs is not None and not outputs[1], f"{where}: outputs mounted writable at MW_OUTPUT_ROOT")
        check(config["MW_SCRATCH_DIR"] in volumes, f"{where}: a scratch volume at MW_SCRATCH_DIR")
        shared.add((uploads and uploads[0], outputs and outputs[0]))
        scratch.append(volumes.get(config["MW_SCRATCH_DIR"], (None,))[0])
        grace = re.fullmatch(r"(\d+)s", str(service.get("stop_grace_period", "")))
        check(grace and int(grace.group(1)) > config["MW_SHUTDOWN_GRACE"],
              f"{where}: stop_grace_period longer than MW_SHUTDOWN_GRACE")
        check(service.get("read_only") is True and "ALL" in service.get("cap_drop", []),
              f"{where}: read-only root, all capabilities dropped")
        check(str(service.get("user", "0")).split(":")[0] not in ("0", "root"), f"{where}: not root")
        memory = quantity(service.get("mem_limit", "0").upper().replace("M", "Mi"), 1 << 20)
        check("MW_JOB_PROCESSES" in env, f"{where}: sets MW_JOB_PROCESSES (sysconf sees the host's cores)")
        check(memory >= config["MW_JOB_PROCESSES"] * config["MW_JOB_MEMORY_MB"],
              f"{where}: mem_limit {memory} MiB holds MW_JOB_PROCESSES x MW_JOB_MEMORY_MB")
        host, port = listen_port(config)
        check(host not in ("127.0.0.1", "localhost") and any(p.endswith(f":{port}") for p in service.get("ports", [])),
              f"{where}: health endpoint published from MW_HTTP_LISTEN's port")
    check(len(shared) == 1, f"workers share the same uploads and outputs: {shared}")
    check(len(set(scratch)) == len(scratch), f"each worker has its own scratch volume: {scratch}")


# ---- Kubernetes -------------------------------------------------------------------------------------------

def load_manifests():
    documents = {}
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                name = os.path.basename(path)
                if doc.get("kind") != "Kustomization":
                    check(doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"),
                          f"{name}: a document without apiVersion, kind or metadata.name")
                documents.setdefault(doc.get("kind"), []).append((name, doc))
    return documents


def container_env(container, configmaps, secrets):
    """The environment a container gets, with secret values taken from the example Secrets."""
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps.get(source["configMapRef"]["name"], {}))
        if "secretRef" in source:
            env.update(secrets.get(source["secretRef"]["name"], {}))
    for item in container.get("env", []):
        value_from = item.get("valueFrom", {})
        if "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            check(ref["key"] in secrets.get(ref["name"], {}), f"env {item['name']}: secret {ref} exists")
            env[item["name"]] = secrets.get(ref["name"], {}).get(ref["key"], "")
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            check(ref["key"] in configmaps.get(ref["name"], {}), f"env {item['name']}: configmap {ref} exists")
            env[item["name"]] = configmaps.get(ref["name"], {}).get(ref["key"], "")
        else:
            env[item["name"]] = str(item.get("value", ""))
    return env


def check_deployment(name, deployment, configmaps, secrets):
    where = f"Deployment {name}"
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
          f"{where}: selector matches the pod labels")
    containers = pod["containers"]
    check(len(containers) == 1, f"{where}: one container")
    container = containers[0]
    env = container_env(container, configmaps, secrets)
    check_variables(where, env)
    for required in ("MW_JOB_PROCESSES", "MW_SLOTS", "MW_CODEC_THREADS", "MW_JOB_MEMORY_MB"):
        check(required in env, f"{where}: sets {required} (sysconf in a container sees the node, not the limits)")
    config = effective_config(where, env)

    host, port = listen_port(config)
    check(host not in ("127.0.0.1", "localhost"), f"{where}: MW_HTTP_LISTEN reachable by the kubelet")
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        probe_port = ports.get(get.get("port"), get.get("port"))
        check(get.get("path") == path and probe_port == port, f"{where}: {probe} on {path} at port {port}: {get}")

    grace = pod.get("terminationGracePeriodSeconds", 30)
    last_report = config["HTTP_CLIENT_TIMEOUT"] * (config["HTTP_CLIENT_RETRIES"] + 1)
    check(grace > config["MW_SHUTDOWN_GRACE"], f"{where}: terminationGracePeriodSeconds {grace} > MW_SHUTDOWN_GRACE")
    check(grace >= config["MW_SHUTDOWN_GRACE"] + last_report,
          f"{where}: grace {grace} s covers the drain and the last report ({config['MW_SHUTDOWN_GRACE']} + "
          f"{last_report} s)")

    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    slots, processes, job_mib = config["MW_SLOTS"], config["MW_JOB_PROCESSES"], config["MW_JOB_MEMORY_MB"]
    check(processes <= slots, f"{where}: MW_JOB_PROCESSES {processes} <= MW_SLOTS {slots}")
    memory = quantity(limits.get("memory", 0), 1 << 20)
    check(memory == processes * job_mib + SUPERVISOR_MIB,
          f"{where}: memory limit {memory} MiB = MW_JOB_PROCESSES x MW_JOB_MEMORY_MB + {SUPERVISOR_MIB} MiB "
          f"({processes} x {job_mib} + {SUPERVISOR_MIB})")
    check(quantity(requests.get("memory", 0), 1 << 20) == memory, f"{where}: memory request = limit (Guaranteed)")
    cpu = quantity(limits.get("cpu", 0))
    check(processes * config["MW_CODEC_THREADS"] <= cpu <= processes * config["MW_CODEC_THREADS"] + 1,
          f"{where}: cpu limit {cpu} = MW_JOB_PROCESSES x MW_CODEC_THREADS (+1 at most)")
    check(config["MW_JOB_CPU_SECONDS"] >= config["MW_JOB_DEADLINE"] * config["MW_CODEC_THREADS"],
          f"{where}: the CPU cap does not fire before the wall-clock deadline")

    security = pod.get("securityContext", {})
    check(security.get("runAsNonRoot") is True and security.get("runAsUser", 0) != 0,
          f"{where}: runAsNonRoot with a non-zero uid")
    check(security.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccomp RuntimeDefault")
    container_security = container.get("securityContext", {})
    check(container_security.get("allowPrivilegeEscalation") is False and
          container_security.get("readOnlyRootFilesystem") is True and
          "ALL" in container_security.get("capabilities", {}).get("drop", []),
          f"{where}: no privilege escalation, read-only root, all capabilities dropped")
    check(pod.get("automountServiceAccountToken") is False, f"{where}: no service account token")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounted = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    scratch = volumes.get(mounted.get(config["MW_SCRATCH_DIR"], {}).get("name"), {})
    check("emptyDir" in scratch, f"{where}: an emptyDir at MW_SCRATCH_DIR")
    size = quantity(scratch.get("emptyDir", {}).get("sizeLimit", 0))
    check(size >= slots * config["MW_MAX_INPUT_BYTES"], f"{where}: scratch holds MW_SLOTS downloads")
    check(quantity(limits.get("ephemeral-storage", 0)) >= size, f"{where}: ephemeral-storage covers the scratch")
    check(mounted.get(config["MW_INPUT_ROOT"], {}).get("readOnly") is True, f"{where}: uploads mounted read-only")
    check(config["MW_OUTPUT_ROOT"] in mounted and not mounted[config["MW_OUTPUT_ROOT"]].get("readOnly"),
          f"{where}: outputs mounted writable")
    check(container.get("args", [None])[0] == "serve", f"{where}: runs `mediaworker serve`")
    return labels, config, limits, env


def test_kubernetes():
    documents = load_manifests()
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    files = {os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))} - {"kustomization.yaml"}
    check(set(kustomization["resources"]) == files, f"kustomization lists every manifest: {kustomization['resources']}")

    configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in documents.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for _, d in documents.get("Secret", [])}
    for name, data in configmaps.items():
        check_variables(f"ConfigMap {name}", data)
    check("RABBITMQ_URL" in secrets.get("mediaworker-secrets", {}) and
          "MW_DATA_SERVICE_TOKEN" in secrets.get("mediaworker-secrets", {}) and
          "POSTGRES_DATA_SERVICE_URL" in configmaps.get("mediaworker-config", {}),
          "RABBITMQ_URL and the token come from a Secret, the Data Service URL from the ConfigMap")

    deployments = {}
    for _, deployment in documents.get("Deployment", []):
        name = deployment["metadata"]["name"]
        deployments[name] = check_deployment(name, deployment, configmaps, secrets)
    gpu = [n for n, (_, _, limits, _) in deployments.items() if "nvidia.com/gpu" in limits]
    check(len(gpu) == 1 and len(deployments) >= 2, f"one GPU Deployment beside the CPU one: {sorted(deployments)}")
    for name in gpu:
        _, config, limits, env = deployments[name]
        check(int(limits["nvidia.com/gpu"]) == 1, f"{name}: one GPU per pod")
        check(config["MW_HWACCEL"] == "cuda", f"{name}: MW_HWACCEL=cuda")
        capabilities = env.get("NVIDIA_DRIVER_CAPABILITIES", "compute,video,utility").split(",")
        check("video" in capabilities, f"{name}: the NVIDIA runtime mounts the video codec libraries")

    authentications = {d["metadata"]["name"]: d for _, d in documents.get("TriggerAuthentication", [])}
    scaled = set()
    for _, scaled_object in documents.get("ScaledObject", []):
        name = scaled_object["metadata"]["name"]
        target = scaled_object["spec"]["scaleTargetRef"]["name"]
        check(target in deployments, f"ScaledObject {name}: targets an existing Deployment")
        scaled.add(target)
        target_config = deployments.get(target, (None, DEFAULTS))[1]
        queue = target_config["MW_QUEUE"]
        triggers = scaled_object["spec"].get("triggers", [])
        rabbit = [t for t in triggers if t.get("type") == "rabbitmq"]
        check(len(rabbit) == 1, f"ScaledObject {name}: one rabbitmq trigger")
        for trigger in rabbit:
            meta = trigger.get("metadata", {})
            check(meta.get("queueName") == queue == DEFAULTS["MW_QUEUE"],
                  f"ScaledObject {name}: queueName {meta.get('queueName')} is the worker's queue {queue}")
            check(meta.get("mode") == "QueueLength" and float(meta.get("value", 0)) == 2 * target_config["MW_SLOTS"],
                  f"ScaledObject {name}: QueueLength target {meta.get('value')} = 2 x MW_SLOTS of {target}")
            check(meta.get("protocol") == "http",
                  f"ScaledObject {name}: http protocol, so unacknowledged (running) jobs count too")
            auth = authentications.get(trigger.get("authenticationRef", {}).get("name"))
            check(auth is not None, f"ScaledObject {name}: its TriggerAuthentication exists")
            for ref in (auth or {}).get("spec", {}).get("secretTargetRef", []):
                check(ref["key"] in secrets.get(ref["name"], {}), f"TriggerAuthentication: secret {ref} exists")
    check(scaled == set(deployments), f"every Deployment is scaled by KEDA: {sorted(scaled)}")

    if shutil.which("kubectl"):
        rendered = subprocess.run(["kubectl", "kustomize", K8S], capture_output=True, text=True, timeout=120)
        check(rendered.returncode == 0, f"kubectl kustomize renders docker/k8s: {rendered.stderr[-500:]}")
        objects = [d for d in yaml.safe_load_all(rendered.stdout) if d] if rendered.returncode == 0 else []
        check(all(o["kind"] == "Namespace" or o["metadata"].get("namespace") == kustomization["namespace"]
                  for o in objects), "every rendered object is in the kustomization's namespace")
        images = [c["image"] for o in objects if o["kind"] == "Deployment"
                  for c in o["spec"]["template"]["spec"]["containers"]]
        check(len(images) == len(deployments) and all("/" in i and ":" in i for i in images),
              f"rendered Deployments use the registry images of kustomization.yaml: {images}")
    else:
        print("note: kubectl is not installed; the kustomization is not rendered")

    budgets = [d["spec"] for _, d in documents.get("PodDisruptionBudget", [])]
    for name, (labels, _, _, _) in deployments.items():
        check(any(all(labels.get(k) == v for k, v in b["selector"]["matchLabels"].items()) for b in budgets),
              f"Deployment {name}: covered by a PodDisruptionBudget")


def test_docs_links():
    """Relative links in the deployment docs lead to files that exist (anchors to headings that exist)."""
    pages = [os.path.join(ROOT, "docs", n) for n in ("architecture.md", "contracts.md", "operations.md",
                                                     "security.md")] + [os.path.join(DOCKER, "README.md")]
    for page in pages:
        with open(page) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
            path, anchor = target
            if re.match(r"[a-z]+://", path):
                continue
            linked = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            check(os.path.exists(linked), f"{os.path.basename(page)}: link to missing {path}")
            if anchor and linked.endswith(".md") and os.path.isfile(linked):
                with open(linked) as f:
                    headings = [re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                                for h in re.findall(r"^#+ (.*)$", f.read(), re.M)]
                check(anchor in headings, f"{os.path.basename(page)}: link to missing heading {path}#{anchor}")


if __name__ == "__main__":
    check(bool(KNOWN_VARIABLES), f"`{BIN} config` prints the configuration")
    test_dockerfile()
    test_compose()
    test_kubernetes()
    test_docs_links()
    finish()
