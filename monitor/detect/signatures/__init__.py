"""The signatures, one a module; ALL in the order of their ids."""

from .compat_call import CompatCall
from .cross_container import CrossContainer
from .fd_sweep import FdSweep
from .other_user import OtherUser
from .permission_probe import PermissionProbe
from .seccomp_refused import SeccompRefused

ALL = (CrossContainer, FdSweep, PermissionProbe, SeccompRefused, CompatCall, OtherUser)
