"""cgroup ids to paths: the mount found in mountinfo, the tree walked on a miss."""

import os

import pytest

from kcmp_monitor.context.cgroups import CgroupPaths, cgroup2_mount


def test_the_unified_mount_is_found_hybrid_or_not(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "31 1 0:27 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    assert cgroup2_mount(str(info)) == "/sys/fs/cgroup/unified"
    info.write_text("30 1 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n")
    assert cgroup2_mount(str(info)) == "/sys/fs/cgroup"
    info.write_text("31 1 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    assert cgroup2_mount(str(info)) is None
    assert cgroup2_mount(str(tmp_path / "missing")) is None


def test_ids_are_directory_inodes_and_a_miss_walks_again(tmp_path):
    scope = tmp_path / "system.slice" / "docker-ab.scope"
    scope.mkdir(parents=True)
    paths = CgroupPaths(str(tmp_path), refresh_s=0)
    assert paths.path(os.stat(tmp_path).st_ino) == "/"
    assert paths.path(os.stat(scope).st_ino) == "/system.slice/docker-ab.scope"
    later = tmp_path / "later"
    later.mkdir()
    assert paths.path(os.stat(later).st_ino) == "/later"
    assert CgroupPaths(None).path(1) is None


@pytest.mark.parametrize("leaf, container", [
    (b"a" * 64, "a" * 64),  # cgroupfs drivers: /docker/<id>, /kubepods/.../pod<uid>/<id>
    (b"docker-" + b"b" * 64 + b".scope", "b" * 64),  # systemd drivers
    (b"cri-containerd-" + b"c" * 64 + b".scope", "c" * 64),
    (b"crio-" + b"d" * 64 + b".scope", "d" * 64),
    (b"libpod-" + b"e" * 64, "e" * 64),
    (b"user@0.service", ""), (b"", ""), (b"a" * 63, ""), (b"A" * 64, ""),
    (b"x" + b"a" * 64, ""), (b"docker-" + b"a" * 64 + b".scope.x", "")])
def test_a_cgroups_own_name_holds_its_containers_id(leaf, container):
    from kcmp_monitor.context.containers import container_of_leaf

    assert container_of_leaf(leaf) == container
