#!/usr/bin/env python3
"""Checks of k8s/ for tests/cli/k8s_test.sh: the manifests' security and operability rules, every flag
they pass exists in the binaries, `kubernetes-validate --strict` on every object (LeaderWorkerSet templates
as Pods), and the Dockerfile's structure with every file it copies present in a clean clone and not
excluded by .dockerignore.
    python3 tests/cli/k8s_check.py BIN_DIR SOURCE_DIR
"""
import fnmatch
import glob
import os
import re
import subprocess
import sys
import tempfile

import yaml

BIN, SRC = sys.argv[1], sys.argv[2]
K8S = os.path.join(SRC, "k8s")
KUBERNETES_VERSION = "1.30.0"
# Flags the manifests pass that other work adds to the binaries (k8s/README.md): --device on the
# coordinator (the CUDA backend, issue 11) and --advertise-address on the worker (issue 12). They are
# reported, not failed, until the binaries list them in --help; then they are checked like the rest.
PENDING = {"layerskip-coordinator": {"--device"}}

errors, notes = [], []


def usage(binary):
    p = subprocess.run([os.path.join(BIN, binary), "--help"], capture_output=True, text=True)
    if p.returncode != 0:
        errors.append(f"{binary} --help exits {p.returncode}")
    return p.stdout + p.stderr


USAGE = {b: usage(b) for b in ("layerskip-coordinator", "layerskip-worker")}


def pod_specs(doc):
    """(name, pod spec) of every pod template in a manifest object."""
    kind = doc["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield doc["metadata"]["name"], doc["spec"]["template"]
    elif kind == "LeaderWorkerSet":
        t = doc["spec"]["leaderWorkerTemplate"]
        for key in ("leaderTemplate", "workerTemplate"):
            if key in t:
                yield f"{doc['metadata']['name']}/{key}", t[key]
    elif kind == "Pod":
        yield doc["metadata"]["name"], doc


def check_container(where, c, spec, gpu_manifest):
    sc = c.get("securityContext", {})
    for key, want in (("runAsNonRoot", True), ("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
        if sc.get(key) is not want:
            errors.append(f"{where}: securityContext.{key} must be {want}")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        errors.append(f"{where}: securityContext.capabilities.drop must hold ALL")
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(part, {}):
                errors.append(f"{where}: resources.{part}.{r} is missing")
    if "livenessProbe" not in c or not ("readinessProbe" in c or "startupProbe" in c):
        errors.append(f"{where}: needs a livenessProbe and a readiness or startup probe")
    argv = c.get("command", []) + c.get("args", [])
    binary = "layerskip-coordinator" if any("coordinator" in a or "k8s-leader" in a for a in argv) else "layerskip-worker"
    flags = [a.split("=", 1)[0] for a in argv if a.startswith("--")]
    for f in flags:
        if re.search(r"(^|[\s\[|])" + re.escape(f) + r"([\s=\]|]|$)", USAGE[binary], re.M) is None:
            if f in PENDING[binary]:
                notes.append(f"{where}: {f} is pending in {binary} (k8s/README.md)")
            else:
                errors.append(f"{where}: {binary} has no flag {f}")
    # TLS on every port that leaves the pod, from a mounted Secret.
    secret_mounts = {m["mountPath"] for m in c.get("volumeMounts", [])
                     if any(v["name"] == m["name"] and "secret" in v for v in spec.get("volumes", []))}
    if "--tls-cert" not in flags or "--tls-key" not in flags:
        errors.append(f"{where}: its ports leave the pod without --tls-cert/--tls-key")
    for f in ("--tls-cert", "--tls-key", "--workers-tls-ca", "--auth-token-file", "--cluster-token-file", "--token-file"):
        if f in flags:
            path = argv[argv.index(f) + 1]
            if not any(path.startswith(m.rstrip("/") + "/") for m in secret_mounts):
                errors.append(f"{where}: {f} {path} is not on a Secret volume")
    if binary == "layerskip-coordinator":
        if "--metrics-port" in flags and "--metrics-tls" not in flags:
            errors.append(f"{where}: the metrics port leaves the pod without --metrics-tls")
        if "--workers" in flags or "k8s-leader" in " ".join(argv):
            if "--workers-tls-ca" not in flags:
                errors.append(f"{where}: the leader does not verify the workers' TLS (--workers-tls-ca)")
    gpus = res.get("limits", {}).get("nvidia.com/gpu")
    device = argv[argv.index("--device") + 1] if "--device" in argv else "cpu"
    if gpu_manifest:
        if binary == "layerskip-worker" or "k8s-leader" not in " ".join(argv):
            if not gpus or not device.startswith("cuda"):
                errors.append(f"{where}: a GPU manifest's model container needs an nvidia.com/gpu limit and --device cuda")
        if not c["image"].endswith(":cuda"):
            errors.append(f"{where}: a GPU manifest must use the CUDA image")
    elif gpus or device.startswith("cuda"):
        errors.append(f"{where}: GPU settings in a CPU manifest")


def to_pod(name, template):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": dict(template.get("metadata", {}), name=name.replace("/", "-").lower()),
            "spec": template["spec"]}


kinds, objects = set(), []
for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
    base = os.path.basename(path)
    gpu = "gpu" in base
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    lws_workers = []
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["kind"] == "LeaderWorkerSet":
            objects.extend(to_pod(n, t) for n, t in pod_specs(doc))
            lws_workers.append(doc["metadata"]["name"])
        else:
            objects.append(doc)
        for name, template in pod_specs(doc):
            spec = template["spec"]
            psc = spec.get("securityContext", {})
            if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
                errors.append(f"{base}: {name}: the pod securityContext must set runAsNonRoot and a non-zero runAsUser")
            for c in spec["containers"]:
                check_container(f"{base}: {name}: {c['name']}", c, spec, gpu)
    for lws in lws_workers:
        policies = [d for d in docs if d["kind"] == "NetworkPolicy"
                    and d["spec"]["podSelector"].get("matchLabels", {}).get("leaderworkerset.sigs.k8s.io/name") == lws]
        if not policies:
            errors.append(f"{base}: no NetworkPolicy guards the workers of {lws}")
        for p in policies:
            for rule in p["spec"].get("ingress", []):
                for peer in rule.get("from", []):
                    if peer.get("podSelector", {}).get("matchLabels", {}).get("leaderworkerset.sigs.k8s.io/name") != lws:
                        errors.append(f"{base}: {p['metadata']['name']} admits pods outside {lws}")
for want in ("Deployment", "Service", "LeaderWorkerSet", "NetworkPolicy"):
    if want not in kinds:
        errors.append(f"no {want} manifest")
for variant in ("single-node-gpu.yaml", "pipeline-lws-gpu.yaml"):
    if not os.path.exists(os.path.join(K8S, variant)):
        errors.append(f"no k8s/{variant}")

# kubernetes-validate --strict, the LeaderWorkerSet templates as Pods.
with tempfile.TemporaryDirectory() as tmp:
    files = []
    for i, obj in enumerate(objects):
        f = os.path.join(tmp, f"{i:02d}-{obj['kind'].lower()}.yaml")
        with open(f, "w") as out:
            yaml.safe_dump(obj, out)
        files.append(f)
    p = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION, *files],
                       capture_output=True, text=True)
    if p.returncode != 0:
        errors.append("kubernetes-validate --strict:\n" + p.stdout + p.stderr)
    elif len(files) < 8:
        errors.append(f"only {len(files)} objects validated")

# The Dockerfile: multi-stage, a non-root runtime without build tools, every copied file in a clean clone.
dockerfile = open(os.path.join(K8S, "Dockerfile")).read()
lines = [l.strip() for l in re.sub(r"\\\n", " ", dockerfile).splitlines() if l.strip() and not l.strip().startswith("#")]
froms = [l for l in lines if l.upper().startswith("FROM ")]
if not any(re.search(r"\bAS builder$", l) for l in froms) or not froms[-1].endswith("AS runtime"):
    errors.append("Dockerfile: expected a builder stage and a final runtime stage")
last = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
runtime = lines[last:]
user = [l.split()[1] for l in runtime if l.upper().startswith("USER ")]
if not user or user[-1].split(":")[0] in ("0", "root"):
    errors.append("Dockerfile: the runtime stage must switch to a non-root USER")
if not any(l.startswith("COPY --from=builder") for l in runtime):
    errors.append("Dockerfile: the runtime must copy the build output from the builder")
if any(re.search(r"apt-get install|install-deps|cmake|build-essential", l) for l in runtime):
    errors.append("Dockerfile: the runtime stage installs or builds")
if not re.search(r"^ARG DEVICE=cpu$", dockerfile, re.M) or "nvidia/cuda" not in dockerfile:
    errors.append("Dockerfile: the CUDA variant (--build-arg DEVICE=cuda) is missing")
tracked = subprocess.run(["git", "-C", SRC, "ls-files"], capture_output=True, text=True)
if tracked.returncode != 0:
    errors.append("git ls-files failed: the source tree must be a clone")
tracked = set(tracked.stdout.split())
ignore = [l.strip() for l in open(os.path.join(SRC, ".dockerignore")) if l.strip() and not l.startswith("#")]
for want in (".git", "build*/"):
    if want not in ignore:
        errors.append(f".dockerignore: missing {want}")


def ignored(path):
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in ignore:
        pat = pat.rstrip("/")
        for pre in prefixes:
            if fnmatch.fnmatch(pre, pat) or (pat.startswith("**/") and fnmatch.fnmatch(pre.split("/")[-1], pat[3:])):
                return True
    return False


copied = 0
for l in lines:
    if not l.upper().startswith("COPY ") or "--from=" in l:
        continue
    srcs = [a for a in l.split()[1:-1] if not a.startswith("--")]
    for s in srcs:
        s = s.rstrip("/")
        files = [f for f in tracked if s in (".", f) or f.startswith(s + "/")]
        if not files:
            errors.append(f"Dockerfile: COPY {s}: not in a clean clone")
        for f in files:
            if ignored(f):
                errors.append(f"Dockerfile: COPY {s}: {f} is excluded by .dockerignore")
        copied += len(files)
if copied < 50:
    errors.append(f"Dockerfile: only {copied} files copied")

for n in notes:
    print("NOTE:", n)
print("\n".join(errors))
print(f"k8s_check: {len(objects)} objects validated, {copied} copied files checked, {len(errors)} problems")
sys.exit(1 if errors else 0)
