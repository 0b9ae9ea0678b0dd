"""The confinement of the gateway's stdio servers, built on the executor's parts (issue 14).

The gateway never imports the executor: it takes a :class:`~mcpexec.gateway.sandbox.Confinement`
(``Gateway(confinement=...)``) and calls :meth:`ServerConfinement.confine` before each spawn.
This domain module builds it from what the executor already has, the same way runs get them:

* a **cgroup v2 leaf** per server process (``<cgroup2>/mcpexec/<instance>/server-<name>-<hex>``,
  :class:`~mcpexec.executor.process_tree.CgroupMechanism`): the process joins it before the
  server's first instruction (the executor's ``exec_wrapper``: ``/bin/sh`` writes
  ``cgroup.procs``, then ``exec``s ``prlimit``, which ``exec``s bwrap or the server, keeping
  the pid); on release ``cgroup.kill`` gets every member, also a child that left the process
  group. The executor's :class:`~mcpexec.executor.watchdog.Watchdog` kills the whole instance
  when mcpexec dies, even by SIGKILL.
* **memory and pids limits** of the whole tree in that leaf, or in the v1 ``memory``/``pids``
  hierarchies on a hybrid host (:class:`~mcpexec.executor.cgroup.LimitGroups`, as for runs);
* **rlimits** per process: no core files, ``open_files`` (``RLIMIT_NOFILE``), ``file_size_mb``;
* for a sandboxed server run by root, the **uid drop** to ``sandbox_uid``/``sandbox_gid``
  (``drop_to``: done inside bwrap by ``setpriv``, :mod:`mcpexec.gateway.sandbox`; shown as
  ``limits["uid"]``/``["gid"]``);
* for a sandboxed server, the runs' default **seccomp denylist** (:mod:`mcpexec.executor.seccomp`:
  namespaces, mounts, ptrace, bpf, keyrings, ``TIOCSTI``, …), loaded by bwrap before the server
  runs (``limits["seccomp"]``; "not enforced" where libseccomp or the kernel lacks it).

Defaults: a sandboxed server gets the runs' defaults (``memory_mb``, ``pids`` settings, clamped
by ``max_memory_mb``/``max_pids``) unless its ``limits`` say otherwise; a server that opted out
(``"sandbox": false``) gets only the limits its config names (and the leaf, for the tree kill).
Unlike a run, a missing cgroup controller does **not** fall back to ``RLIMIT_AS``/
``RLIMIT_NPROC``: ``RLIMIT_AS`` breaks node (it reserves gigabytes of address space) and the
per-uid ``RLIMIT_NPROC`` binds nothing here; the limit is shown as not enforced instead.
``RLIMIT_CPU`` is not offered: it counts a long-lived server's whole life, not a call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from mcpexec.executor import seccomp
from mcpexec.executor.base import EffectiveLimits
from mcpexec.executor.cgroup import AttemptGroups, LimitGroups, find_cgroup2_mount, limit_plan
from mcpexec.executor.limits import exec_wrapper, rlimits_for
from mcpexec.executor.process_tree import CgroupMechanism, CgroupTree
from mcpexec.executor.procfs import new_instance_id
from mcpexec.executor.watchdog import Watchdog
from mcpexec.gateway.config import ServerConfig
from mcpexec.gateway.errors import DownstreamUnavailable
from mcpexec.settings import Settings

log = logging.getLogger(__name__)

NOT_ENFORCED = "not enforced"


@dataclass
class ConfinedServer:
    """One server process's leaf and limit groups (:class:`~mcpexec.gateway.sandbox.Confined`)."""

    argv: list[str]
    limits: Mapping[str, object]
    tree: CgroupTree | None = None
    groups: AttemptGroups | None = None
    released: bool = field(default=False)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        with contextlib.suppress(Exception):
            if self.tree is not None:
                self.tree.kill()  # cgroup.kill: members that left the process group too
                self.tree.close()
        with contextlib.suppress(Exception):
            if self.groups is not None:
                self.groups.close()


class ServerConfinement:
    """Per App: cgroup instance, limit groups and watchdog for the gateway's stdio servers."""

    def __init__(
        self,
        *,
        memory_mb: int | None,
        pids: int | None,
        max_memory_mb: int,
        max_pids: int,
        open_files: int,
        file_size_mb: int,
        drop_to: tuple[int, int] | None = None,
    ) -> None:
        self.memory_mb = memory_mb
        self.pids = pids
        self.max_memory_mb = max_memory_mb
        self.max_pids = max_pids
        self.open_files = open_files
        self.file_size_mb = file_size_mb
        self._drop_to = drop_to
        self.instance_id = new_instance_id()
        self.mechanism: CgroupMechanism | None = None
        self.limit_groups: LimitGroups | None = None
        self.watchdog: Watchdog | None = None
        self.problems: list[str] = []
        self.started = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerConfinement:
        return cls(
            memory_mb=settings.memory_mb,
            pids=settings.pids,
            max_memory_mb=settings.max_memory_mb,
            max_pids=settings.max_pids,
            open_files=settings.max_open_files,
            file_size_mb=settings.max_file_size_mb,
            drop_to=(settings.sandbox_uid, settings.sandbox_gid) if os.geteuid() == 0 else None,
        )

    def start(self) -> None:
        """Create the instance cgroup (where writable) and start the watchdog (also done by
        the first :meth:`confine`: nothing is set up for a gateway without stdio servers).
        What this host cannot do is logged once and shown in each server's ``limits``."""
        if self.started:
            return
        self.started = True
        mount = find_cgroup2_mount()
        if mount is not None:
            mechanism = CgroupMechanism(self.instance_id, mount)
            try:
                mechanism.setup()
            except OSError as exc:
                self.problems.append(f"no cgroup leaf for servers: {exc}")
            else:
                self.mechanism = mechanism
        else:
            self.problems.append("no writable cgroup2 mount: no cgroup leaf for servers")
        groups = LimitGroups(self.instance_id, self.mechanism.instance if self.mechanism else None)
        support = groups.setup()
        self.problems += support.problems
        self.limit_groups = groups
        if self.mechanism is not None:
            self.watchdog = Watchdog(self.mechanism.watchdog_args())
        for problem in self.problems:
            log.warning("MCP servers' confinement: %s", problem)

    async def stop(self) -> None:
        self.started = False
        if self.watchdog is not None:
            await self.watchdog.stop()
            self.watchdog = None
        if self.limit_groups is not None:
            self.limit_groups.teardown()
            self.limit_groups = None
        if self.mechanism is not None:
            self.mechanism.teardown()
            self.mechanism = None

    @cached_property
    def seccomp_error(self) -> str | None:
        """Why sandboxed servers get no seccomp filter here (probed once, logged once)."""
        error = seccomp.unavailable()
        if error is not None:
            log.warning("MCP servers' confinement: no seccomp: %s", error)
        return error

    def drop_to(self) -> tuple[int, int] | None:
        return self._drop_to

    def seccomp_fd(self) -> int | None:
        return None if self.seccomp_error is not None else seccomp.filter_fd(False)

    def _wanted(self, config: ServerConfig) -> tuple[int | None, int | None, int]:
        asked = config.limits
        memory = asked.memory_mb if asked.memory_mb is not None else None
        pids = asked.pids if asked.pids is not None else None
        if config.sandbox:
            memory = self.memory_mb if memory is None else memory
            pids = self.pids if pids is None else pids
        if memory is not None:
            memory = min(memory, self.max_memory_mb)
        if pids is not None:
            pids = min(pids, self.max_pids)
        files = min(asked.open_files or self.open_files, self.open_files)
        return memory, pids, files

    def confine(self, config: ServerConfig, argv: Sequence[str]) -> ConfinedServer:
        self.start()
        memory, pids, files = self._wanted(config)
        leaf = f"server-{config.name}-{secrets.token_hex(3)}"
        tree = CgroupTree(self.mechanism.instance / leaf) if self.mechanism is not None else None
        groups: AttemptGroups | None = None
        try:
            if self.limit_groups is not None:
                v2 = tree.leaf.path if tree is not None else None
                groups = self.limit_groups.new(leaf, v2, memory, pids)
            support = self.limit_groups.support if self.limit_groups is not None else None
            plan = limit_plan(support, memory, pids) if support is not None else None
            limits: dict[str, object] = {"tree": "cgroup" if tree is not None else "group"}
            if memory is not None:
                limits["memory_mb"] = memory
                by = plan.memory if plan is not None else None
                limits["memory_by"] = f"cgroup-{by}" if by else NOT_ENFORCED
            if pids is not None:
                limits["pids"] = pids
                by = plan.pids if plan is not None else None
                limits["pids_by"] = f"cgroup-{by}" if by else NOT_ENFORCED
            limits["open_files"] = files
            if config.sandbox and self._drop_to is not None:
                limits["uid"], limits["gid"] = self._drop_to
            if config.sandbox:
                limits["seccomp"] = "denylist" if self.seccomp_error is None else NOT_ENFORCED
            effective = EffectiveLimits(
                timeout_s=0.0,
                cpu_s=None,
                memory_mb=None,  # never RLIMIT_AS for a server (module docstring)
                file_size_mb=self.file_size_mb,
                open_files=files,
                max_output_bytes=0,
            )
            joins = (tree.join if tree is not None else None, groups.join if groups else None)
            paths = tuple(p for join in joins if join is not None for p in join.paths)
            prefix = exec_wrapper(rlimits_for(effective, address_space=False), paths)
            if prefix is None:
                raise DownstreamUnavailable(
                    f"MCP server '{config.name}' cannot be confined: prlimit (util-linux) is "
                    "not installed",
                    server=config.name,
                )
            # The parent's copies of the join descriptors are not needed (the shell opens the
            # files by path).
            if tree is not None:
                tree.release_child_fd()
            if groups is not None:
                groups.release_child_fds()
        except BaseException:
            ConfinedServer([], {}, tree, groups).release()
            raise
        return ConfinedServer([*prefix, *argv], limits, tree, groups)
