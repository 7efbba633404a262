#!/usr/bin/env python3
"""Checks .github/workflows against the project's CI/CD rules, and runs the
workflows' own shell steps (image tags, AWS settings) with GitHub's inputs
simulated. Then breaks a copy of the workflows in known ways and checks that
each rule notices.

zizmor (scripts/lint.sh) checks what it knows: actions pinned to a commit
SHA, credentials left in the checkout, template injection, dangerous
triggers. The rules here are the ones it lacks, each saying why; the
mutations show zizmor catching an unpinned action too.

usage: python3 tests/workflows.py   (needs PyYAML, bash and zizmor)
Prints one "ok - ..." / "not ok - ..." line per check and a summary; exits 1
when a check fails.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
CI = "ci.yml"
IMAGE = "image.yml"
CI_JOBS = ("lint", "unit", "e2e", "compose")
AWS_VARS = ("AWS_REGION", "AWS_ROLE_ARN", "ECR_REPOSITORY")
SHA = "0123456789abcdef0123456789abcdef01234567"
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
VERSION_COMMENT = re.compile(r"^v\d+(\.\d+){0,2}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)\s*(?:#\s*(\S+))?\s*$")
STATIC_KEYS = re.compile(r"aws-access-key-id|aws-secret-access-key|aws_secret_access_key", re.I)
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


class Workflow:
    """One workflow file: its text and its parsed form."""

    def __init__(self, name, text):
        self.name = name
        self.text = text
        self.doc = yaml.safe_load(text)
        # YAML 1.1 reads the key `on` as the boolean true.
        self.on = self.doc.get("on", self.doc.get(True)) or {}
        self.jobs = self.doc.get("jobs") or {}

    def steps(self):
        for job_id, job in self.jobs.items():
            for step in job.get("steps") or []:
                yield job_id, step


def load(texts):
    return {name: Workflow(name, text) for name, text in texts.items()}


def uses_of(step_or_job):
    return str(step_or_job.get("uses", ""))


def action_steps(wf, job_id, action):
    return [s for s in wf.jobs[job_id].get("steps") or [] if uses_of(s).split("@")[0] == action]


def push_jobs(wf):
    """Jobs that talk to AWS or push an image."""
    found = []
    for job_id, job in wf.jobs.items():
        for step in job.get("steps") or []:
            name = uses_of(step).split("@")[0]
            pushes = name == "docker/build-push-action" and (step.get("with") or {}).get("push") is True
            if name.startswith("aws-actions/") or pushes:
                found.append(job_id)
                break
    return found


# --- rules: each returns a list of problems ---------------------------------------


def zizmor_passes(wfs):
    """zizmor's own audits, offline, on these workflows."""
    zizmor = shutil.which("zizmor")
    if not zizmor:
        return ["zizmor is missing: run scripts/lint.sh install-tools"]
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp, ".github", "workflows")
        where.mkdir(parents=True)
        for wf in wfs.values():
            (where / wf.name).write_text(wf.text)
        out = subprocess.run([zizmor, "--offline", "--config", str(REPO / ".github" / "zizmor.yml"), tmp],
                             capture_output=True, text=True)
    if out.returncode == 0:
        return []
    return [line for line in out.stdout.splitlines() if re.match(r"^(error|warning|help|info)\[", line)] or [out.stderr]


# zizmor checks the SHA pin; the comment naming its version it checks only
# online (ref-version-mismatch), against GitHub.
def every_pin_names_its_version(wfs):
    problems = []
    for wf in wfs.values():
        parsed = [uses_of(s) for _, s in wf.steps() if "uses" in s]
        parsed += [uses_of(j) for j in wf.jobs.values() if "uses" in j]
        lines = [USES_LINE.match(line) for line in wf.text.splitlines()]
        lines = [m for m in lines if m]
        if sorted(m.group(1) for m in lines) != sorted(parsed):
            problems.append(f"{wf.name}: every uses: must be on a line of its own (found {parsed})")
        for m in lines:
            target, comment = m.group(1), m.group(2)
            if target.startswith("./.github/workflows/"):
                continue
            if not comment or not VERSION_COMMENT.match(comment):
                problems.append(f"{wf.name}: {target} has no '# vX.Y.Z' version comment")
    return problems


# zizmor has no rule for AWS keys or AWS values written into a workflow.
def no_static_aws_keys(wfs):
    return [f"{wf.name} mentions {m.group(0)}" for wf in wfs.values() for m in STATIC_KEYS.finditer(wf.text)]


def no_hard_coded_aws(wfs):
    problems = []
    for wf in wfs.values():
        for pattern in (r"arn:aws:", r"\.dkr\.ecr\.", r"\b\d{12}\b", r"amazonaws\.com"):
            if re.search(pattern, wf.text):
                problems.append(f"{wf.name} hard-codes an AWS value ({pattern})")
    image = wfs[IMAGE]
    for job_id in push_jobs(image):
        for step in action_steps(image, job_id, "aws-actions/configure-aws-credentials"):
            given = step.get("with") or {}
            for key, var in (("role-to-assume", "AWS_ROLE_ARN"), ("aws-region", "AWS_REGION")):
                if given.get(key) != "${{ vars.%s }}" % var:
                    problems.append(f"{job_id}: {key} must be ${{{{ vars.{var} }}}}, is {given.get(key)!r}")
    return problems


# zizmor cannot know which job is the CI and which one pushes.
def push_runs_after_ci(wfs):
    problems = []
    image, ci = wfs[IMAGE], wfs[CI]
    if "workflow_call" not in ci.on:
        problems.append(f"{CI} cannot be called: no workflow_call trigger")
    ci_callers = [j for j, job in image.jobs.items() if uses_of(job) == f"./.github/workflows/{CI}"]
    if not ci_callers:
        problems.append(f"{IMAGE} does not run {CI}")
    jobs = push_jobs(image)
    if not jobs:
        problems.append(f"{IMAGE} has no job that pushes")
    for job_id in jobs:
        job = image.jobs[job_id]
        needs = job.get("needs") or []
        needs = [needs] if isinstance(needs, str) else needs
        if not set(ci_callers) & set(needs):
            problems.append(f"{job_id} does not need the CI job ({ci_callers}); needs: {needs}")
        condition = str(job.get("if", ""))
        if re.search(r"always\(\)|failure\(\)|cancelled\(\)|!\s*success\(\)", condition):
            problems.append(f"{job_id} may run after CI failed: if: {condition}")
        if (job.get("permissions") or {}).get("id-token") != "write":
            problems.append(f"{job_id} lacks permissions id-token: write (OIDC)")
    push = image.on.get("push") or {}
    if push.get("branches") != ["main"] or not any(str(t).startswith("v") for t in push.get("tags") or []):
        problems.append(f"{IMAGE} must run on pushes to main and on v* tags, runs on {push}")
    return problems


# zizmor's excessive-permissions flags broad defaults, not a job that writes
# contents it need not (tried: contents: write on a test job passes it).
def least_privilege(wfs):
    problems = []
    for wf in wfs.values():
        if wf.doc.get("permissions") != {}:
            problems.append(f"{wf.name}: top-level permissions must be {{}}, is {wf.doc.get('permissions')}")
        pushers = push_jobs(wf) if wf.name == IMAGE else []
        for job_id, job in wf.jobs.items():
            if "permissions" not in job:
                problems.append(f"{wf.name}: job {job_id} does not declare its permissions")
                continue
            perms = job["permissions"] or {}
            if not isinstance(perms, dict):
                problems.append(f"{wf.name}: job {job_id} has permissions: {perms}")
                continue
            for scope, level in perms.items():
                allowed = scope == "id-token" and job_id in pushers
                if level == "write" and not allowed:
                    problems.append(f"{wf.name}: job {job_id} may write {scope}")
    return problems


# zizmor (offline) has no rule that superseded runs are cancelled.
def cancels_superseded_runs(wfs):
    problems = []
    groups = []
    for wf in wfs.values():
        concurrency = wf.doc.get("concurrency") or {}
        group = str(concurrency.get("group", ""))
        groups.append(group)
        if concurrency.get("cancel-in-progress") is not True:
            problems.append(f"{wf.name}: concurrency.cancel-in-progress is not true")
        if "github.ref" not in group:
            problems.append(f"{wf.name}: the concurrency group {group!r} is not per ref")
    # A called workflow sharing its caller's group would cancel itself.
    if len(set(groups)) != len(groups):
        problems.append(f"the workflows share a concurrency group: {groups}")
    return problems


# The project's own test plan and image settings: nothing generic knows them.
def ci_runs_the_tests(wfs):
    problems = []
    ci = wfs[CI]
    for trigger in ("push", "pull_request", "workflow_call"):
        if trigger not in ci.on:
            problems.append(f"{CI} does not run on {trigger}")
    for job_id in CI_JOBS:
        if job_id not in ci.jobs:
            problems.append(f"{CI} has no {job_id} job")
    runs = {job_id: " ".join(str(s.get("run", "")) for s in job.get("steps") or []) for job_id, job in ci.jobs.items()}
    wanted = {
        "lint": ["scripts/lint.sh install-tools", "scripts/lint.sh", "tests/workflows.py"],
        "unit": [
            "cargo test --release --locked --lib --bins",
            "cargo test --release --locked --manifest-path vendor/tiny_http/Cargo.toml",
        ],
        "e2e": ["cargo test --release --locked --test e2e"],
        "compose": ["tests/compose.sh"],
    }
    for job_id, commands in wanted.items():
        for command in commands:
            if command not in runs.get(job_id, ""):
                problems.append(f"{CI}: job {job_id} does not run {command}")
    if "unit" not in str((ci.jobs.get("e2e") or {}).get("needs", "")):
        problems.append(f"{CI}: the e2e tests must run after the unit tests (needs: unit)")
    e2e_env = (ci.jobs.get("e2e") or {}).get("env") or {}
    if e2e_env.get("MYSQL_IMAGE") != "mysql:9.7" or e2e_env.get("NGINX_IMAGE") != "nginx:1.30":
        problems.append(f"{CI}: e2e must use mysql:9.7 and nginx:1.30, has {e2e_env}")
    compose_env = {k: v for _, s in ci.steps() if "tests/compose.sh" in str(s.get("run", "")) for k, v in (s.get("env") or {}).items()}
    if compose_env.get("COMPOSE_IMAGES") != "official":
        problems.append(f"{CI}: the compose test must use the official images, env: {compose_env}")
    for job_id in ("lint", "unit", "e2e"):
        if job_id not in ci.jobs or not action_steps(ci, job_id, "Swatinem/rust-cache"):
            problems.append(f"{CI}: job {job_id} does not cache cargo")
    return problems


def image_build_settings(wfs):
    problems = []
    image = wfs[IMAGE]
    for job_id in push_jobs(image):
        builds = action_steps(image, job_id, "docker/build-push-action")
        if not action_steps(image, job_id, "docker/setup-buildx-action"):
            problems.append(f"{job_id} does not set up Buildx")
        if not action_steps(image, job_id, "aws-actions/amazon-ecr-login"):
            problems.append(f"{job_id} does not log in with aws-actions/amazon-ecr-login")
        for step in builds:
            given = step.get("with") or {}
            expect = {
                "push": given.get("push") is True,
                "provenance": str(given.get("provenance", "false")) not in ("false", "False", ""),
                "sbom": given.get("sbom") is True,
                "cache-from gha": "type=gha" in str(given.get("cache-from", "")),
                "cache-to gha": "type=gha" in str(given.get("cache-to", "")),
                "tags from the tags step": given.get("tags") == "${{ steps.tags.outputs.tags }}",
            }
            problems += [f"{job_id}: build-push-action lacks {what}" for what, ok in expect.items() if not ok]
        if not builds:
            problems.append(f"{job_id} does not build with docker/build-push-action")
    return problems


# --- the workflows' own shell steps, run as GitHub would ------------------------------


def run_step(step, context, github_env=None):
    """Runs a step's run: script with bash in the repository, its env: resolved
    from `context` plus GitHub's own variables; returns (exit code, stdout,
    $GITHUB_OUTPUT)."""
    with tempfile.NamedTemporaryFile("r", suffix=".out") as output:
        full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), "GITHUB_OUTPUT": output.name}
        full.update({k: resolve(v, context) for k, v in (step.get("env") or {}).items()})
        full.update(github_env or {})
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=REPO,
            env=full,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode, done.stdout, parse_output(output.read())


def parse_output(text):
    """$GITHUB_OUTPUT's key=value and key<<DELIMITER forms."""
    values, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            body = []
            for more in lines:
                if more == delimiter:
                    break
                body.append(more)
            values[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def resolve(value, context):
    """Replaces ${{ name }} with context[name]; unknown names are an error."""

    def one(m):
        if m.group(1) not in context:
            raise KeyError(f"no value for ${{{{ {m.group(1)} }}}} in this simulation")
        return context[m.group(1)]

    return EXPRESSION.sub(one, str(value))


def step_named(wf, job_id, step_id):
    for step in wf.jobs.get(job_id, {}).get("steps") or []:
        if step.get("id") == step_id:
            return step
    raise LookupError(f"{wf.name}: job {job_id} has no step with id {step_id}")


def tags_for(wfs, ref, repository="webcluster"):
    """The Tags step of the push job, run for a push of SHA to `ref`."""
    image = wfs[IMAGE]
    step = step_named(image, push_jobs(image)[0], "tags")
    context = {"steps.ecr.outputs.registry": REGISTRY, "vars.ECR_REPOSITORY": repository}
    return run_step(step, context, {"GITHUB_REF": ref, "GITHUB_SHA": SHA})


def computed_tags(wfs):
    problems = []
    image_name = f"{REGISTRY}/webcluster"
    cases = [
        ("refs/heads/main", [f"{image_name}:{SHA}", f"{image_name}:latest"], SHA),
        ("refs/tags/v1.2.3", [f"{image_name}:{SHA}", f"{image_name}:1.2.3"], "1.2.3"),
        ("refs/tags/v2.0.0-rc.1", [f"{image_name}:{SHA}", f"{image_name}:2.0.0-rc.1"], "2.0.0-rc.1"),
    ]
    for ref, tags, version in cases:
        status, _, out = tags_for(wfs, ref)
        got = out.get("tags", "").splitlines()
        if status != 0 or got != tags or out.get("version") != version:
            problems.append(f"{ref}: exit {status}, tags {got}, version {out.get('version')}; expected {tags}, {version}")
    # Nothing is pushed for a ref that is neither main nor a version tag.
    for ref in ("refs/heads/feature", "refs/tags/v1.2", "refs/tags/release-1"):
        status, _, out = tags_for(wfs, ref)
        if status == 0 or out.get("tags"):
            problems.append(f"{ref}: expected a refusal, got exit {status} and tags {out.get('tags')!r}")
    status, _, out = tags_for(wfs, "refs/heads/main", repository="Bad Name")
    if status == 0:
        problems.append(f"a repository name with a space was accepted: {out}")
    return problems


def skips_with_notice_without_aws(wfs):
    problems = []
    image = wfs[IMAGE]
    pushers = push_jobs(image)
    settings_jobs = [j for j in image.jobs if j not in pushers and "uses" not in image.jobs[j]]
    if len(settings_jobs) != 1:
        return [f"expected one job that checks the AWS settings, found {settings_jobs}"]
    job_id = settings_jobs[0]
    step = step_named(image, job_id, "check")
    output = str((image.jobs[job_id].get("outputs") or {}).get("configured", ""))
    if output != "${{ steps.check.outputs.configured }}":
        problems.append(f"{job_id} does not export steps.check.outputs.configured: {output!r}")
    for job in pushers:
        condition = str(image.jobs[job].get("if", ""))
        if f"needs.{job_id}.outputs.configured == 'true'" not in condition:
            problems.append(f"{job} does not depend on the AWS settings: if: {condition!r}")
    full = {f"vars.{name}": f"value-of-{name}" for name in AWS_VARS}
    cases = [(full, "true", None)]
    for name in AWS_VARS:
        cases.append(({**full, f"vars.{name}": ""}, "false", name))
    cases.append(({k: "" for k in full}, "false", "AWS_ROLE_ARN"))
    for context, configured, named in cases:
        status, stdout, out = run_step(step, context)
        notice = "::notice" in stdout
        if status != 0 or out.get("configured") != configured or notice != (named is not None):
            problems.append(f"vars {context}: exit {status}, configured={out.get('configured')}, stdout {stdout!r}")
        elif named and named not in stdout:
            problems.append(f"the notice does not name {named}: {stdout!r}")
    return problems


RULES = [
    ("zizmor finds nothing (offline audits)", zizmor_passes),
    ("every pinned action names its version in a comment", every_pin_names_its_version),
    ("no workflow mentions static AWS keys", no_static_aws_keys),
    ("AWS region and role come from repository variables, nothing AWS is hard-coded", no_hard_coded_aws),
    ("the push job runs only after CI succeeds, with id-token: write", push_runs_after_ci),
    ("least-privilege permissions: {} at the top, declared per job", least_privilege),
    ("concurrency cancels superseded runs, per workflow and ref", cancels_superseded_runs),
    ("CI runs the lints, unit, e2e (mysql:9.7, nginx:1.30) and compose tests, with caches", ci_runs_the_tests),
    ("the image is built with Buildx, pushed with provenance, SBOM and the GHA cache", image_build_settings),
    ("tags: SHA + latest on main, SHA + X.Y.Z on vX.Y.Z, refusal otherwise", computed_tags),
    ("without the AWS variables the push is skipped with a notice naming them", skips_with_notice_without_aws),
]

# Each breaks the real workflows in one way (the first occurrence of the
# text); the named rule must notice.
MUTATIONS = [
    ("an action pinned to a tag", IMAGE, "@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1", "@v7", zizmor_passes),
    ("a pin without its version comment", CI, " # v2.9.2", "", every_pin_names_its_version),
    ("a static AWS key", IMAGE, "role-to-assume:", "aws-access-key-id: x\n          role-to-assume:", no_static_aws_keys),
    ("a hard-coded role ARN", IMAGE, "${{ vars.AWS_ROLE_ARN }}\n          aws-region", "arn:aws:iam::123456789012:role/x\n          aws-region", no_hard_coded_aws),
    ("push not waiting for CI", IMAGE, "needs: [ci, aws-settings]", "needs: [aws-settings]", push_runs_after_ci),
    ("push after a failed CI", IMAGE, "if: needs.aws-settings", "if: always() && needs.aws-settings", push_runs_after_ci),
    ("no id-token: write", IMAGE, "      id-token: write\n", "", push_runs_after_ci),
    ("write-all contents", CI, "permissions:\n      contents: read", "permissions:\n      contents: write", least_privilege),
    ("no cancel-in-progress", CI, "cancel-in-progress: true", "cancel-in-progress: false", cancels_superseded_runs),
    ("no SBOM", IMAGE, "sbom: true", "sbom: false", image_build_settings),
    ("tags not from the script", IMAGE, 'run: bash scripts/image-tags.sh "$IMAGE" >>"$GITHUB_OUTPUT"', 'run: echo "tags=$IMAGE:latest" >>"$GITHUB_OUTPUT"', computed_tags),
    ("a notice-less skip", IMAGE, 'echo "::notice title', 'echo "title', skips_with_notice_without_aws),
]


def main():
    texts = {path.name: path.read_text() for path in sorted(WORKFLOWS.glob("*.yml"))}
    passed = failed = 0

    def report(ok, what, problems=()):
        nonlocal passed, failed
        print(f"{'ok' if ok else 'not ok'} - {what}")
        for problem in problems:
            print(f"#   {problem}")
        passed, failed = passed + ok, failed + (not ok)

    missing = {CI, IMAGE} - set(texts)
    if missing:
        report(False, "the workflows exist", [f"missing {sorted(missing)} in {WORKFLOWS}"])
        return 1
    wfs = load(texts)
    for what, rule in RULES:
        try:
            problems = rule(wfs)
        except (KeyError, LookupError, IndexError, subprocess.SubprocessError) as err:
            problems = [f"{type(err).__name__}: {err}"]
        report(not problems, what, problems)
    for what, name, old, new, rule in MUTATIONS:
        if old not in texts[name]:
            report(False, f"mutation '{what}' applies", [f"{name} does not hold {old!r}"])
            continue
        broken = load({**texts, name: texts[name].replace(old, new, 1)})
        try:
            caught = bool(rule(broken))
        except (KeyError, LookupError, IndexError, subprocess.SubprocessError):
            caught = True
        report(caught, f"the rule notices {what}")
    print(f"# workflows: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
