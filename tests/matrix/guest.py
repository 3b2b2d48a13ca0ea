"""Debian's kernels booted in QEMU with this machine's files, to run a command on each.

The guest's root is an overlay: the kernel's own packages (image, modules, headers) over the
host's `/` shared read-only through 9p, and a tmpfs on top, so the checkout, its venv and the
host's BCC are where they are on the host, and `/lib/modules/$(uname -r)/build` holds the guest
kernel's own headers. Nothing the guest writes reaches the host but its run folder.

    python -m tests.matrix.guest fetch              # every pinned kernel into .tools/kernels
    python -m tests.matrix.guest run debian12 -- kcmp-monitor --check
"""

import argparse
import dataclasses
import io
import json
import lzma
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / ".tools" / "kernels"
ARCHIVE = "http://deb.debian.org/"
BUSYBOX = Path("/bin/busybox")
# What the initramfs needs to reach the host's files; the rest loads from the guest's root.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class GuestError(Exception):
    """The guest could not be had (packages, boot): the reason, for a skip or a failure."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    distribution: str
    release: str
    suite: str
    archive: str
    packages: tuple
    deselect: tuple = ()  # tests known to fail on this kernel, left out and said

    @property
    def dir(self) -> Path:
        return CACHE / self.release

    @property
    def tree(self) -> Path:
        """The packages' files, laid out as on a Debian root."""
        return self.dir / "root"


def kernels() -> list[Kernel]:
    with open(HERE / "kernels.toml", "rb") as f:
        table = tomllib.load(f)
    return [Kernel(**{**k, "packages": tuple(k["packages"]),
                      "deselect": tuple(k.get("deselect", ()))}) for k in table["kernel"]]


def kernel(name: str) -> Kernel:
    for k in kernels():
        if name in (k.name, k.release):
            return k
    raise GuestError(f"no kernel {name!r} in {HERE / 'kernels.toml'}")


def _apt(args: list[str], config: Path, cwd: Optional[Path] = None) -> None:
    done = subprocess.run(["apt-get", "-q", *args], env={**os.environ, "APT_CONFIG": str(config)},
                          cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise GuestError(f"apt-get {' '.join(args)}: {done.stderr.strip()[-600:]}")


def _apt_config(ks: list[Kernel]) -> Path:
    """A private apt (own sources, lists and cache), so the host's is neither read nor changed."""
    base = CACHE / "apt"
    for d in ("lists/partial", "cache/archives/partial"):
        (base / d).mkdir(parents=True, exist_ok=True)
    sources = sorted({f"deb {ARCHIVE}{k.archive} {k.suite} main\n" for k in ks})
    (base / "sources.list").write_text("".join(sources))
    config = base / "apt.conf"
    config.write_text(
        f'Dir::Etc::SourceList "{base}/sources.list";\nDir::Etc::SourceParts "/nonexistent";\n'
        f'Dir::State::Lists "{base}/lists";\nDir::Cache "{base}/cache";\n'
        'Dir::State::status "/dev/null";\nAPT::Architecture "amd64";\n'
        'Acquire::Languages "none";\nAPT::Sandbox::User "root";\n')
    return config


def fetch(ks: list[Kernel]) -> None:
    """Each kernel's packages unpacked into its folder, once; its boot files made."""
    missing = [k for k in ks if not (k.dir / "ready").exists()]
    if not missing:
        return
    config = _apt_config(missing)
    _apt(["update"], config)
    for k in missing:
        if k.dir.exists():
            shutil.rmtree(k.dir)
        debs = k.dir / "debs"
        debs.mkdir(parents=True)
        try:
            _apt(["download", *k.packages], config, cwd=debs)
        except GuestError as exc:
            raise GuestError(f"{k.name}: the pinned packages are not served any more; "
                             f"update tests/matrix/kernels.toml ({exc})") from None
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(k.tree)], check=True)
        shutil.rmtree(debs)
        _depmod(k)
        _merge_usr(k.tree)
        _vmlinux(k)
        _initramfs(k)
        (k.dir / "ready").touch()


def _depmod(k: Kernel) -> None:
    """modules.dep, which the packages leave to their postinst; this depmod reads lib/modules."""
    link = k.tree / "lib"
    merged = not link.exists()
    if merged:
        link.symlink_to("usr/lib")
    try:
        subprocess.run(["depmod", "-b", str(k.tree), k.release], check=True)
    finally:
        if merged:
            link.unlink()


def _merge_usr(tree: Path) -> None:
    """On a merged-/usr host, /lib is a link: the tree's lib/ moves under usr/, or the overlay
    would hide the host's /lib behind it."""
    for top in ("lib", "bin", "sbin"):
        if (Path("/") / top).is_symlink() and (tree / top).is_dir() and \
                not (tree / top).is_symlink():
            dest = tree / "usr" / top
            dest.mkdir(parents=True, exist_ok=True)
            for entry in (tree / top).iterdir():
                entry.rename(dest / entry.name)
            (tree / top).rmdir()


def _vmlinux(k: Kernel) -> None:
    """The uncompressed kernel from vmlinuz: QEMU boots it without decompressing under TCG."""
    image = (k.tree / "boot" / f"vmlinuz-{k.release}").read_bytes()
    for magic, unpack in ((XZ_MAGIC, _unxz), (ZSTD_MAGIC, _unzstd)):
        at = image.find(magic)
        if at >= 0:
            (k.dir / "vmlinux").write_bytes(unpack(image[at:]))
            return
    raise GuestError(f"{k.name}: no xz or zstd payload in vmlinuz-{k.release}")


def _unxz(data: bytes) -> bytes:
    return lzma.LZMADecompressor().decompress(data)


def _unzstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-dc"], input=data, capture_output=True).stdout


def _modules_in_order(k: Kernel, names) -> list[Path]:
    """The modules' files with what each needs before it, from the tree's modules.dep."""
    base = k.tree / "usr" / "lib" / "modules" / k.release
    if not base.exists():
        base = k.tree / "lib" / "modules" / k.release
    deps = {}
    for line in (base / "modules.dep").read_text().splitlines():
        path, _, needs = line.partition(":")
        deps[path] = needs.split()
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        for dep in deps[path]:
            visit(dep)
        if path not in order:
            order.append(path)

    for name in names:
        if name in by_name:  # else built in
            visit(by_name[name])
    return [base / p for p in order]


def _initramfs(k: Kernel) -> None:
    """busybox, the boot modules (decompressed) and the first stage of init, as a newc cpio."""
    files: dict[str, tuple[int, bytes]] = {
        "bin/busybox": (0o755, BUSYBOX.read_bytes()),
        "init": (0o755, (HERE / "init-stage1.sh").read_bytes()),
    }
    for i, ko in enumerate(_modules_in_order(k, BOOT_MODULES)):
        data = ko.read_bytes()
        if ko.name.endswith(".xz"):
            data = _unxz(data)
        elif ko.name.endswith(".zst"):
            data = _unzstd(data)
        files[f"modules/{i:02d}-{ko.name.split('.ko')[0]}.ko"] = (0o644, data)
    dirs = ["bin", "dev", "proc", "sys", "modules", "host", "kernel", "rw", "newroot"]
    (k.dir / "initramfs").write_bytes(_cpio(dirs, files))


def _cpio(dirs: list[str], files: dict[str, tuple[int, bytes]]) -> bytes:
    out = io.BytesIO()
    ino = 1

    def entry(name: str, mode: int, data: bytes) -> None:
        nonlocal ino
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        out.write(b"\0" * (-out.tell() % 4) + data)
        out.write(b"\0" * (-out.tell() % 4))
        ino += 1

    for d in dirs:
        entry(d, stat.S_IFDIR | 0o755, b"")
    for name, (mode, data) in files.items():
        entry(name, stat.S_IFREG | mode, data)
    entry("TRAILER!!!", 0, b"")
    return out.getvalue()


@dataclasses.dataclass
class Result:
    kernel: Kernel
    accel: str
    returncode: int
    output: str
    console: str
    seconds: float
    files: Path


def _qemu(k: Kernel, run: Path, accel: str, memory: str) -> list[str]:
    cmdline = (f"console=ttyS0 panic=-1 quiet loglevel=3 kcmp.stage2={HERE / 'init-stage2.sh'} "
               f"kcmp.release={k.release}")
    share = "security_model=none,multidevs=remap"
    return ["qemu-system-x86_64", "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
            "-m", memory, "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
            "-no-reboot", "-serial", f"file:{run / 'console.log'}",
            "-kernel", str(k.dir / "vmlinux"), "-initrd", str(k.dir / "initramfs"),
            "-append", cmdline,
            "-virtfs", f"local,path=/,mount_tag=host,readonly=on,{share}",
            "-virtfs", f"local,path={k.tree},mount_tag=kernel,readonly=on,{share}",
            "-virtfs", f"local,path={run},mount_tag=run,{share}"]


def run(k: Kernel, command: str, timeout: float, accel: str = "tcg", memory: str = "4G",
        workdir: Optional[Path] = None) -> Result:
    """`command` (a shell line) as root in the guest, in the checkout; its output and status."""
    fetch([k])
    run_dir = Path(tempfile.mkdtemp(prefix=f"guest-{k.name}-", dir=workdir))
    os.chmod(run_dir, 0o777)
    (run_dir / "cmd").write_text(f"cd {shlex.quote(str(ROOT))}\n{command}\n")
    start = time.monotonic()
    try:
        qemu = subprocess.run(_qemu(k, run_dir, accel, memory), timeout=timeout,
                              capture_output=True, text=True)
        error = qemu.stderr.strip()
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout:.0f} s"
    seconds = time.monotonic() - start
    rc_file, out_file = run_dir / "rc", run_dir / "output"
    output = out_file.read_text(errors="replace") if out_file.exists() else ""
    console = (run_dir / "console.log").read_text(errors="replace") \
        if (run_dir / "console.log").exists() else ""
    if not rc_file.exists():
        raise GuestError(f"{k.name} ({accel}) never finished its command: {error}\n"
                         f"console:\n{console[-3000:]}\noutput:\n{output[-3000:]}")
    return Result(k, accel, int(rc_file.read_text()), output, console, seconds, run_dir)


def accelerator(k: Kernel) -> str:
    """KVM where a guest boots and runs under it, else QEMU's TCG (chosen by trying: this
    machine's /dev/kvm creates guests that then die)."""
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                if run(k, "true", timeout=15, accel="kvm", workdir=Path(tmp)).returncode == 0:
                    return "kvm"
            except GuestError:
                pass
    return "tcg"


RESULTS = CACHE / "results"
# --check's lines for the README's columns.
FEATURES = {"hooks": "hooks",
            "caller view": "caller context from the kernel",
            "targets": "the named processes from the kernel",
            "fd paths": "the named fds from the kernel",
            "cgroup": "the caller's cgroup from the kernel",
            "32-bit": "32-bit capture",
            "seccomp arguments": "arguments of calls refused by seccomp"}


def save_result(result: Result, check: str, counts: dict) -> None:
    """A guest run's outcome, for the README's table."""
    said = dict(line.split(": ", 1) for line in check.splitlines() if ": " in line)
    RESULTS.mkdir(parents=True, exist_ok=True)
    k = result.kernel
    (RESULTS / f"{k.name}.json").write_text(json.dumps({
        "release": k.release, "distribution": k.distribution, "accel": result.accel,
        "seconds": round(result.seconds), "returncode": result.returncode,
        "deselected": len(k.deselect),
        "check": said.get("check", "?"), "tests": counts,
        "features": {col: said.get(line, "?").split(" (")[0] for col, line in FEATURES.items()},
    }, indent=1))


def table() -> str:
    """The README's "Supported kernels" table, from the last matrix run's results."""
    rows = ["| kernel | distribution | " + " | ".join(FEATURES) + " | `--check` | guest tests "
            "| time |", "|---" * (len(FEATURES) + 5) + "|"]
    for k in kernels():
        path = RESULTS / f"{k.name}.json"
        if not path.exists():
            raise GuestError(f"no result for {k.name}: run the matrix (make test) first")
        r = json.loads(path.read_text())
        t = r["tests"]
        passed = t.get("tests", 0) - t.get("failures", 0) - t.get("errors", 0) - \
            t.get("skipped", 0)
        outcome = f"{passed}/{t.get('tests', 0)} passed" if r["returncode"] == 0 else \
            f"failed ({passed}/{t.get('tests', 0)} passed)"
        if r.get("deselected"):
            outcome += f", {r['deselected']} known failing left out"
        took = f"{r['seconds'] // 60} min {r['seconds'] % 60:02d} s ({r['accel']})"
        rows.append(f"| {r['release']} | {r['distribution']} | "
                    + " | ".join(r["features"][c] for c in FEATURES)
                    + f" | {r['check']} | {outcome} | {took} |")
    return "\n".join(rows) + "\n"


README = ROOT / "README.md"
TABLE_START, TABLE_END = "<!-- kernel-matrix -->\n", "<!-- /kernel-matrix -->\n"


def write_readme(rows: str) -> None:
    text = README.read_text()
    head, rest = text.split(TABLE_START, 1)
    README.write_text(head + TABLE_START + rows + TABLE_END + rest.split(TABLE_END, 1)[1])


def check_host() -> None:
    for tool in ("qemu-system-x86_64", "depmod", "dpkg-deb", "apt-get", "zstd"):
        if not shutil.which(tool):
            raise GuestError(f"needs {tool} for the kernel matrix (run `sudo make setup` "
                             "with --test, as `make test` does)")
    if not BUSYBOX.exists():
        raise GuestError("needs busybox-static for the guests' initramfs (run `sudo make test`)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.matrix.guest")
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("fetch", help="download and unpack every pinned kernel")
    t = sub.add_parser("table", help="the README's table from the last matrix run")
    t.add_argument("--readme", action="store_true", help="write it into README.md")
    p = sub.add_parser("run", help="run a shell command in a kernel's guest")
    p.add_argument("kernel")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto")
    p.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    try:
        check_host()
        if args.verb == "fetch":
            fetch(kernels())
            return 0
        if args.verb == "table":
            if args.readme:
                write_readme(table())
            else:
                sys.stdout.write(table())
            return 0
        k = kernel(args.kernel)
        accel = accelerator(k) if args.accel == "auto" else args.accel
        with tempfile.TemporaryDirectory() as tmp:
            result = run(k, shlex.join(args.command), args.timeout, accel, workdir=Path(tmp))
    except GuestError as exc:
        print(f"guest: {exc}", file=sys.stderr)
        return 69
    sys.stdout.write(result.output)
    print(f"guest: {k.name} {k.release} ({result.accel}): exit {result.returncode} "
          f"in {result.seconds:.0f} s", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
