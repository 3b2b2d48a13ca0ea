"""The pure parts of the loader: cflags, and the checks against fake /proc and tracefs trees."""

import gzip

import pytest

from kcmp_monitor import abi
from kcmp_monitor.caps import check_privileges
from kcmp_monitor.kernel import features, probes
from kcmp_monitor.kernel import kcmp as loader
from kcmp_monitor.errors import NoPermission, NoSuchTarget, Unavailable
from kcmp_monitor.kernel.btf import VMLINUX
from kcmp_monitor.kernel.home import Home, home_namespaces
from kcmp_monitor.kernel.options import Filters, ProgramOptions


def _defines(options, extra=(), btf=None):
    """The -D flags of the rows the options want, but those a probe or the BTF decides
    (unless in extra)."""
    on = [f.name for f in features.FEATURES
          if f.wanted(options) and not (f.probe or f.btf or f.requires)] + list(extra)
    build = features.Build(options, home_namespaces(options.home), btf or {})
    return {f.split("=")[0][2:]: (f.split("=", 1)[1] if "=" in f else None)
            for f in features.cflags(on, build, "/bpf") if f.startswith("-D")}


def test_default_flags_carry_the_abi_values_and_the_trace_stream():
    import os

    own = os.stat("/proc/self/ns/pid")
    assert _defines(ProgramOptions()) == {
        "RINGBUF_PAGES": "1024", "PRIORITY_PAGES": "256", "KCMP_EPOLL_TFD": "7",
        "KCMP_FILE_TYPE": "0",
        "KCMP_TYPE_UNKNOWN_BIT": "8",
        "EPERM_ERRNO": "1", "STREAM_TRACE": None, "PROC_TABLE": "65536",
        "OWN_PIDNS_DEV": f"{own.st_dev}ULL", "OWN_PIDNS_INO": f"{own.st_ino}ULL",
        "OWN_MNTNS_INO": str(os.stat("/proc/self/ns/mnt").st_ino),
        "OWN_NETNS_INO": str(os.stat("/proc/self/ns/net").st_ino),
        "CLONE_THREAD_FLAG": "65536", "CLONE_PARENT_FLAG": "32768"}


@pytest.mark.parametrize("of", [2, "host"])
def test_callers_may_be_held_to_another_process_s_namespaces(of):
    """--namespaces-of PID or host (kthreadd's: the kernel's initial namespaces, the host's
    for a monitor in a container sharing the host's pid namespace)."""
    import os

    init = os.stat("/proc/2/ns/pid")
    d = _defines(ProgramOptions(home=of))
    assert (d["OWN_PIDNS_DEV"], d["OWN_PIDNS_INO"], d["OWN_MNTNS_INO"], d["OWN_NETNS_INO"]) == (
        f"{init.st_dev}ULL", f"{init.st_ino}ULL", str(os.stat("/proc/2/ns/mnt").st_ino),
        str(os.stat("/proc/2/ns/net").st_ino))
    assert home_namespaces(of).inodes()["net"] == os.stat("/proc/2/ns/net").st_ino


def test_a_process_not_there_is_one_clear_error():
    with pytest.raises(NoSuchTarget, match="^--namespaces-of 4194304: no such process$"):
        home_namespaces(4194304)


def test_exporter_flags():
    d = _defines(ProgramOptions(trace=False, count=True, log_eperm=True))
    assert "COUNT" in d and "STREAM_EPERM" in d and "STREAM_TRACE" not in d
    assert "PROC_TABLE" in d  # the EPERM log's events get context too
    d = _defines(ProgramOptions(trace=False, count=True))
    assert "PROC_TABLE" not in d  # nothing streamed: no process table, no fork hook


def test_filters_become_defines():
    options = ProgramOptions(
        filters=Filters(tgid=42, uid=1000, types=frozenset({0, 7, 8}), errors_only=True),
        ringbuf_pages=64)
    d = _defines(options)
    assert d["FILTER_TGID"] == "42" and d["FILTER_UID"] == "1000"
    assert d["TYPE_MASK"] == "0x181" and "ERRORS_ONLY" in d and d["RINGBUF_PAGES"] == "64"


def test_comm_is_packed_as_the_kernel_pads_it():
    d = _defines(ProgramOptions(filters=Filters(comm=b"kcmpload")))
    assert d["FILTER_COMM_LO"] == "0x64616f6c706d636bULL"  # "kcmpload" little-endian
    assert d["FILTER_COMM_HI"] == "0x0ULL"
    d = _defines(ProgramOptions(filters=Filters(comm=b"0123456789abcde")))
    assert int(d["FILTER_COMM_HI"][:-3], 16) == int.from_bytes(b"89abcde\0", "little")


def test_compat_flags():
    d = _defines(ProgramOptions(), extra=("compat",))
    assert d["IA32_NR_KCMP"] == "349" and d["ENOSYS_ERRNO"] == "38" and "CAPTURE_COMPAT" in d


def _status(tmp_path, capeff):
    path = tmp_path / "status"
    path.write_text(f"Name:\tx\nCapInh:\t0\nCapEff:\t{capeff:016x}\n")
    return str(path)


@pytest.mark.parametrize("caps", [
    1 << abi.CAP_SYS_ADMIN,
    (1 << abi.CAP_BPF) | (1 << abi.CAP_PERFMON),
    0x1FFFFFFFFFF,
])
def test_privileges_enough(tmp_path, caps):
    check_privileges(_status(tmp_path, caps))


@pytest.mark.parametrize("caps, missing", [
    (0, "missing CAP_BPF and CAP_PERFMON"),
    (1 << abi.CAP_BPF, "missing CAP_PERFMON"),
])
def test_privileges_missing(tmp_path, caps, missing):
    with pytest.raises(NoPermission, match=missing) as info:
        check_privileges(_status(tmp_path, caps))
    assert "sudo" in str(info.value) and info.value.exit_code == 77


def test_tracefs_not_mounted(tmp_path):
    with pytest.raises(Unavailable, match="tracefs is not mounted.*make setup") as info:
        probes.check_kernel(str(tmp_path), str(tmp_path))
    assert info.value.exit_code == 69


def test_kcmp_tracepoint_missing(tmp_path):
    (tmp_path / "events").mkdir()
    with pytest.raises(Unavailable, match="CONFIG_FTRACE_SYSCALLS"):
        probes.check_kernel(str(tmp_path), str(tmp_path))


def test_headers_missing(tmp_path):
    (tmp_path / "events/syscalls/sys_enter_kcmp").mkdir(parents=True)
    with pytest.raises(Unavailable, match="no kernel headers.*make setup"):
        probes.check_kernel(str(tmp_path), str(tmp_path / "modules"))
    (tmp_path / "modules/build").mkdir(parents=True)
    probes.check_kernel(str(tmp_path), str(tmp_path / "modules"))


def test_kernel_features_bring_their_offsets_and_abi_values():
    d = _defines(ProgramOptions(), extra=("seccomp",),
                 btf={"seccomp": ["-DBTF_TASK_STACK=32"]})
    assert d["BTF_TASK_STACK"] == "32" and "KERNEL_SECCOMP" in d
    assert (d["NR_KCMP"], d["SECCOMP_MODE_FILTER_VALUE"], d["THREAD_SIZE_VALUE"]) == (
        "312", "2", "16384")
    assert "NR_KCMP" not in _defines(ProgramOptions())


def _kernel_rows(selected):
    return tuple(f for f in selected.on if features.BY_NAME[f].btf)


def test_kernel_features_wanted(tmp_path):
    import os

    from tests.helpers import skip_or_fail

    if not os.path.exists(VMLINUX):
        skip_or_fail(f"the kernel has no BTF at {VMLINUX}")
    streamed, flags = loader.selected(ProgramOptions())
    assert _kernel_rows(streamed) == ("caller", "targets", "files", "cgroup", "seccomp")
    assert not set(streamed.off) & set(features.KERNEL_FEATURES)
    # This machine mounts cgroup v1 controllers: the caller's cgroup is read in one of them.
    subsys = [f for f in flags["cgroup"] if f.startswith("-DCGROUP_V1_SUBSYS=")]
    assert len(subsys) == (probes.v1_controller() is not None)
    counted, _ = loader.selected(ProgramOptions(trace=False, count=True))
    # The caller's namespaces count calls from elsewhere; its fds are read only for records.
    assert _kernel_rows(counted) == ("caller", "seccomp")
    none, flags = loader.selected(ProgramOptions(btf=str(tmp_path / "none")))
    assert _kernel_rows(none) == () and flags == {}
    assert set(none.off) >= {"caller", "files", "cgroup", "seccomp"}


@pytest.mark.parametrize("rows, controller", [
    ("pids\t8\t4\t1\nmemory\t4\t69\t1\n", "pids"),
    ("pids\t0\t4\t1\nmemory\t4\t69\t1\n", "memory"),  # pids not mounted in v1
    ("pids\t8\t4\t0\nmemory\t0\t9\t1\n", None),  # disabled; v2 alone
    ("cpuset\t0\t1\t1\n", None)])
def test_the_v1_hierarchy_read_is_a_mounted_controllers(tmp_path, rows, controller):
    cgroups = tmp_path / "cgroups"
    cgroups.write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\n" + rows)
    assert probes.v1_controller(str(cgroups)) == controller
    assert probes.v1_controller(str(tmp_path / "none")) is None


@pytest.mark.parametrize("config, cmdline, reason", [
    (["CONFIG_IA32_EMULATION=y"], "quiet", None),
    (["# CONFIG_IA32_EMULATION is not set"], "quiet", "no 32-bit emulation"),
    (["CONFIG_IA32_EMULATION=y"], "quiet ia32_emulation=0", "ia32_emulation=0"),
    (["CONFIG_IA32_EMULATION=y"], "ia32_emulation=off", "ia32_emulation=0"),
    (["CONFIG_IA32_EMULATION=y", "CONFIG_IA32_EMULATION_DEFAULT_DISABLED=y"], "quiet",
     "off by default"),
    (["CONFIG_IA32_EMULATION=y", "CONFIG_IA32_EMULATION_DEFAULT_DISABLED=y"],
     "ia32_emulation=1", None),
    (["CONFIG_IA32_EMULATION=y"], "quiet -- ia32_emulation=0", None),  # init's, not ours
    (None, "quiet", None),  # no config: nothing says it is off
    (None, "ia32_emulation=n", "ia32_emulation=0"),
])
def test_no_ia32_says_why_32_bit_capture_would_buy_nothing(tmp_path, config, cmdline, reason):
    path = tmp_path / "config.gz"
    if config is not None:
        with gzip.open(path, "wt") as f:
            f.write("\n".join(config) + "\n")
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    found = probes.no_ia32(str(path), str(tmp_path / "cmdline"))
    assert (found is None) if reason is None else (reason in found), found


def test_the_exporters_fd_sweep_is_counted_in_the_kernel_when_asked():
    d = _defines(ProgramOptions(trace=True, urgent_only=True, count=True, sweep=(32, 10)))
    assert (d["SWEEP_FDS"], d["SWEEP_WINDOW_NS"]) == ("32", "10000000000ULL")
    assert "SWEEP_FDS" not in _defines(ProgramOptions())


class _Kernel:
    """A fake bcc whose kernel refuses, as 5.10's verifier did, a program carrying any of
    `too_heavy`, and (refuse_compat) any 32-bit hook."""

    def __init__(self, too_heavy=(), refuse_compat=None):
        self.too_heavy, self.refuse_compat, self.tried = set(too_heavy), refuse_compat, []

    def BPF(self, text, cflags):
        defines = {f[2:] for f in cflags if f.startswith("-D")}
        self.tried.append(defines)
        if defines & {f"KERNEL_{f.upper()}" for f in self.too_heavy}:
            raise Exception("Failed to load BPF program b'raw_tracepoint__sys_exit': "
                            "Argument list too long")
        if self.refuse_compat and "CAPTURE_COMPAT" in defines:
            raise Exception(self.refuse_compat)
        return "loaded"


FEATURES = ("caller", "files", "cgroup", "seccomp")
HOME = Home(1, 2, 3, 4)


def _load(kernel):
    wanted = features.Selected(("core", "stream", "compat") + FEATURES, {})
    return loader.load(kernel, wanted, features.Build(ProgramOptions(), HOME, {}))


def test_a_refused_program_gives_up_only_the_features_it_must():
    kernel = _Kernel(too_heavy={"files"})
    got = _load(kernel)
    assert "compat" in got.on and "compat" not in got.off
    assert _kernel_rows(got) == ("caller", "cgroup", "seccomp") and list(got.off) == ["files"]
    assert got.off["files"].startswith("the kernel refused the program with it (")
    assert "Argument list too long" in got.off["files"]
    assert len(kernel.tried) == 2


def test_features_go_costliest_first_and_the_32_bit_hook_last():
    kernel = _Kernel(too_heavy={"files", "cgroup", "seccomp", "caller"},
                     refuse_compat="Failed to load BPF program b'raw_tracepoint__sys_exit': "
                                   "Permission denied")
    got = _load(kernel)
    assert _kernel_rows(got) == ()
    assert list(got.off) == ["files", "cgroup", "seccomp", "caller", "compat"]
    assert "compat" not in got.on and "Permission denied" in got.off["compat"]
    assert len(kernel.tried) == 6


def test_a_32_bit_hook_that_cannot_attach_costs_no_feature():
    kernel = _Kernel(refuse_compat="Failed to attach BPF to raw tracepoint")
    got = _load(kernel)
    assert _kernel_rows(got) == FEATURES and list(got.off) == ["compat"]
    assert "compat" not in got.on and "raw tracepoint" in got.off["compat"]


def test_a_refused_core_is_the_error():
    class Core(_Kernel):
        def BPF(self, text, cflags):
            raise Exception("Failed to attach BPF program b'tracepoint__syscalls__sys_exit_"
                            "kcmp' to tracepoint syscalls:sys_exit_kcmp")

    with pytest.raises(loader.Refused, match="sys_exit_kcmp"):
        _load(Core())


class _NoTrampolines(_Kernel):
    def BPF(self, text, cflags):
        if "-DHOOK_FENTRY" in cflags:
            self.tried.append({f[2:] for f in cflags if f.startswith("-D")})
            raise Exception("Failed to attach BPF to exit kernel func")
        return super().BPF(text, cflags)


def _load_fentry(kernel, hooks):
    wanted = features.Selected(("core", "fentry", "stream", "compat") + FEATURES, {})
    return loader.load(kernel, wanted, features.Build(ProgramOptions(hooks=hooks), HOME, {}))


def test_a_trampoline_that_cannot_attach_falls_back_to_the_tracepoints_under_auto():
    kernel = _NoTrampolines()
    got = _load_fentry(kernel, "auto")
    assert "fentry" not in got.on and list(got.off) == ["fentry"]
    assert "exit kernel func" in got.off["fentry"]
    assert _kernel_rows(got) == FEATURES and "compat" in got.on and len(kernel.tried) == 2


def test_a_trampoline_asked_for_by_name_that_cannot_attach_is_the_error():
    with pytest.raises(loader.Refused, match="exit kernel func"):
        _load_fentry(_NoTrampolines(), "fentry")


def test_the_trampolines_go_with_the_saved_registers_they_read():
    got = _load_fentry(_Kernel(too_heavy={"seccomp"}), "fentry")
    assert "fentry" not in got.on and "seccomp" not in got.on
    assert got.off["fentry"] == "it needs seccomp, which is off"
