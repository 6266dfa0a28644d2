#!/usr/bin/env python3
"""Derives deploy/seccomp-io_uring.json and deploy/seccomp-no-io_uring.json from Docker's
default seccomp profile (moby's profiles/seccomp/default.json). See deploy/README.md.

    python3 deploy/gen-seccomp.py PATH/TO/default.json [OUT_DIR]

Both outputs are the input with:
- "defaultErrnoRet": 1 (EPERM, what Docker answers anyway when it is absent),
- io_uring_setup, io_uring_enter and io_uring_register taken out of whichever rule names
  them and put in one rule of their own, with a comment, at the top of the list:
  SCMP_ACT_ALLOW in seccomp-io_uring.json, SCMP_ACT_ERRNO with errnoRet 1 (EPERM) in
  seccomp-no-io_uring.json (what Docker 25 and later answer: they dropped the three from
  the allow list, so the default action refuses them).
Everything else is kept as it is, in the same order; empty fields ("args": [],
"comment": "", "includes": {}, "excludes": {}) are left out, which means the same.

A third output, seccomp-io_uring.oci.json, is seccomp-io_uring.json in the OCI runtime-spec
format, for Kubernetes Localhost profiles: containerd reads those as runtime-spec JSON and
does not know Docker's "archMap", "includes" and "excludes". It is Docker's profile resolved
the way Docker resolves it for an unprivileged container (no capabilities: the
capability-gated rules are left out, the "excludes caps" rules kept) on x86_64 or aarch64,
on a kernel of 4.8 or newer; "architectures" lists both families (the syscall names a
family lacks are skipped by runc).
"""
import copy
import json
import os
import sys

IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]


def derive(base, allow):
    p = copy.deepcopy(base)
    out = {"defaultAction": p.pop("defaultAction"), "defaultErrnoRet": 1}
    p.pop("defaultErrnoRet", None)
    out.update(p)
    kept = []
    for rule in out["syscalls"]:
        for key in [k for k, v in rule.items() if v in ([], {}, "", None)]:
            del rule[key]
        rule["names"] = [n for n in rule["names"] if n not in IO_URING]
        if rule["names"]:
            kept.append(rule)
    if allow:
        rule = {
            "names": IO_URING,
            "action": "SCMP_ACT_ALLOW",
            "comment": "fserve: io_uring, which Docker 25+ and Kubernetes RuntimeDefault refuse",
        }
    else:
        rule = {
            "names": IO_URING,
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "comment": "fserve tests: io_uring refused with EPERM, as Docker 25+ does",
        }
    out["syscalls"] = [rule] + kept
    return out


OCI_ARCHES = ["amd64", "x32", "x86", "arm64", "arm"]


def to_oci(docker_profile):
    p = copy.deepcopy(docker_profile)
    archs = []
    for entry in p["archMap"]:
        if entry["architecture"] in ("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"):
            archs += [entry["architecture"]] + (entry.get("subArchitectures") or [])
    rules = []
    for rule in p["syscalls"]:
        inc = rule.pop("includes", {}) or {}
        exc = rule.pop("excludes", {}) or {}
        if inc.get("caps"):
            continue
        if inc.get("arches") and not set(inc["arches"]) & set(OCI_ARCHES):
            continue
        if exc.get("arches") and set(OCI_ARCHES) <= set(exc["arches"]):
            continue
        rules.append(rule)
    # Docker resolves to one action per plain syscall; make sure this file does too.
    seen = {}
    for rule in rules:
        if rule.get("args"):
            continue
        for name in rule["names"]:
            key = (rule["action"], rule.get("errnoRet"))
            if seen.setdefault(name, key) != key:
                sys.exit(f"conflicting rules for {name}: {seen[name]} and {key}")
    return {
        "defaultAction": p["defaultAction"],
        "defaultErrnoRet": p["defaultErrnoRet"],
        "architectures": archs,
        "syscalls": rules,
    }


def write(path, profile):
    with open(path, "w") as f:
        json.dump(profile, f, indent="\t")
        f.write("\n")
    print(f"wrote {path}")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        base = json.load(f)
    out_dir = sys.argv[2] if len(sys.argv) == 3 else os.path.dirname(os.path.abspath(__file__))
    with_uring = derive(base, True)
    write(os.path.join(out_dir, "seccomp-io_uring.json"), with_uring)
    write(os.path.join(out_dir, "seccomp-no-io_uring.json"), derive(base, False))
    write(os.path.join(out_dir, "seccomp-io_uring.oci.json"), to_oci(with_uring))


if __name__ == "__main__":
    main()
