"""The daemon's TOML config file: load it, check it, and hand out settings objects.

What this module holds:

* :func:`load_config` reads a file and merges it over the embedded default
  (``cloudkernel/default.toml``, every setting with its default and a comment);
  :func:`parse_config` does the same for text.
* :class:`Config`, a tree of frozen dataclasses, one per section, and the
  objects the rest of the daemon takes as they are: :meth:`Config.sender_config`
  (``SenderConfig`` with a ``ClassConfig`` per QoS class), the consensus
  ``FilterConfig`` and ``ReputationConfig``, and :meth:`Config.policy_for`,
  which gives each topic its settings.
* :func:`derive_node_id` and :func:`resolve_socket_path`, the two "auto"
  settings, as functions of their inputs so that they can be tested.
* :data:`LIVE_RELOADABLE`, the settings that change on reload without a
  restart.

Rules it keeps:

* The file is untrusted input: it is read up to :data:`MAX_CONFIG_BYTES`, and
  every way it can be wrong ends in one :class:`~cloudkernel.errors.ConfigError`
  that names the file, the line and the setting (``mesh.port``,
  ``topic[2].kind``) in one printable line.  Nothing else escapes.
* Unknown sections and keys are errors with the nearest known name as a
  suggestion: a typo never passes silently.
* Types are strict: a bool is not an integer, a string is not a number; an
  integer is taken where a float is expected.
* Ranges that the settings objects of ``core`` and ``consensus`` already check
  are left to them; their errors are mapped to the setting and its line.

docs/CONFIG.md describes every setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import hashlib
import ipaddress
import itertools
import math
import os
import re
import socket
import stat
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

from .consensus._types import KINDS, FilterConfig, ReputationConfig
from .core.membership import MembershipConfig
from .core.receiver import ReceiverConfig
from .core.redundancy import RedundancyPolicy
from .core.sender import ClassConfig, SenderConfig
from .core.signals import QoS
from .errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "LIVE_RELOADABLE",
    "MAX_CONFIG_BYTES",
    "MAX_TOPIC_ENTRIES",
    "POLICY_CACHE_SIZE",
    "RESTART_ONLY",
    "Config",
    "ConsensusConfig",
    "ControlConfig",
    "LogConfig",
    "MeshSettings",
    "MetricsConfig",
    "NodeConfig",
    "QosConfig",
    "RealtimeConfig",
    "TopicConfig",
    "TopicPolicy",
    "default_config_text",
    "derive_node_id",
    "is_live_reloadable",
    "load_config",
    "parse_config",
    "resolve_socket_path",
]

#: Where operators put the config file.
DEFAULT_CONFIG_PATH: Final = "/etc/cloudkernel/cloudkernel.toml"
#: A config file larger than this is refused unread.
MAX_CONFIG_BYTES: Final = 1 << 20
#: ``[[topic]]`` entries at most.
MAX_TOPIC_ENTRIES: Final = 1024
#: Topics whose policy :meth:`Config.policy_for` remembers (least recently used evicted).
POLICY_CACHE_SIZE: Final = 4096
#: Sections and settings that take effect on reload; any other change needs a restart.
LIVE_RELOADABLE: Final = frozenset(
    {"membership", "qos", "consensus", "topic", "log", "metrics.max_topic_series"}
)
#: Settings inside a live section that still need a restart: the reputation
#: table's settings shape what it has learnt, which a reload would not redo.
RESTART_ONLY: Final = frozenset({"consensus.reputation"})

_MACHINE_ID_PATH: Final = "/etc/machine-id"
_MAX_U32: Final = 2**32 - 1
#: ``sun_path`` holds 108 bytes with the terminating NUL.
_MAX_SOCKET_PATH: Final = 107
_MAX_PATH: Final = 4096
_MAX_PATTERN: Final = 512
_MAX_INTERFACES: Final = 64
_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
_QOS_NAMES: Final = ("critical", "normal", "bulk")
_FILTER_FIELDS: Final = tuple(f.name for f in dataclasses.fields(FilterConfig))
_REPUTATION_FIELDS: Final = tuple(f.name for f in dataclasses.fields(ReputationConfig))

Path = tuple[str | int, ...]


# ---------------------------------------------------------------------------
# The "auto" settings
# ---------------------------------------------------------------------------

_MACHINE_ID = re.compile(r"[0-9a-f]{32}")


def derive_node_id(machine_id: str | None, hostname: str) -> int:
    """The node id that ``id = "auto"`` stands for: stable, in 1..2^32-1.

    A hash (BLAKE2b) of the machine id when ``machine_id`` is a valid one (32
    hex digits, not all zero, surrounding whitespace ignored), otherwise of
    the hostname (case ignored).  The two inputs hash under different
    prefixes, so a hostname cannot collide with a machine id on purpose.  A
    hash of 0 is hashed again with a counter, so the result is never 0.

    :param machine_id: the contents of /etc/machine-id, or None when unreadable.
    :param hostname: this host's name.
    """
    mid = (machine_id or "").strip().lower()
    if _MACHINE_ID.fullmatch(mid) and mid != "0" * 32:
        material = b"cloudkernel node id: machine-id\0" + mid.encode("ascii")
    else:
        material = b"cloudkernel node id: hostname\0" + hostname.strip().lower().encode(
            "utf-8", "replace"
        )
    for counter in itertools.count():
        digest = hashlib.blake2b(material + counter.to_bytes(8, "big"), digest_size=4).digest()
        value = int.from_bytes(digest, "big")
        if value:
            return value
    raise AssertionError("unreachable")  # pragma: no cover


def resolve_socket_path(setting: str, euid: int, environ: Mapping[str, str]) -> str:
    """The control socket path that ``control.socket`` stands for.

    ``"auto"`` is ``/run/cloudkernel/control.sock`` for root (``euid`` 0);
    otherwise ``$XDG_RUNTIME_DIR/cloudkernel/control.sock`` when that variable
    holds an absolute path and the result fits a socket address, and
    ``/tmp/cloudkernel-<euid>/control.sock`` when not.  Any other setting is
    returned as it is.

    :param setting: the ``control.socket`` setting.
    :param euid: the effective user id the daemon or CLI runs as.
    :param environ: the environment (``os.environ``).
    """
    if setting != "auto":
        return setting
    if euid == 0:
        return "/run/cloudkernel/control.sock"
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and "\0" not in runtime:
        path = os.path.join(runtime, "cloudkernel", "control.sock")
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
            return path
    return f"/tmp/cloudkernel-{euid}/control.sock"


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """``[node]``: who this node is and where it keeps its files."""

    #: node id in 1..2^32-1, or "auto" (see :meth:`resolve_id`)
    id: int | Literal["auto"]
    #: the swarm key file, made absolute against the config file's directory
    key_file: str
    #: directory of the daemon's state (its epoch counter)
    state_dir: str
    #: a key file whose key is held as *next* from start-up (a key rotation
    #: under way, see docs/CONTROL.md), made absolute as key_file; "" for none
    next_key_file: str = ""

    def resolve_id(
        self, *, machine_id_path: str = _MACHINE_ID_PATH, hostname: str | None = None
    ) -> int:
        """This node's id: ``id`` itself, or for "auto" :func:`derive_node_id`
        of ``machine_id_path``'s contents (None when unreadable) and the hostname.

        :param machine_id_path: the file holding the machine id.
        :param hostname: the hostname; ``socket.gethostname()`` when None.
        """
        if self.id != "auto":
            return self.id
        try:
            with open(machine_id_path, encoding="ascii") as f:
                machine_id: str | None = f.read(4096)
        except (OSError, UnicodeDecodeError):
            machine_id = None
        return derive_node_id(machine_id, socket.gethostname() if hostname is None else hostname)


@dataclass(frozen=True, slots=True)
class MeshSettings:
    """``[mesh]``: how the node reaches the swarm."""

    #: IPv4 multicast group
    group: str
    #: IPv6 multicast group, "" for none
    group6: str
    #: UDP port of the swarm
    port: int
    #: interface names, or ("auto",): every up, multicast-capable interface
    interfaces: tuple[str, ...]
    #: multicast TTL / hop limit of outgoing packets
    ttl: int
    #: deliver our multicast to other sockets on this host
    loopback: bool
    #: largest UDP payload sent or accepted
    max_datagram: int
    #: encrypt payloads as well as authenticating them
    encrypt: bool
    #: byte-level RS parity bytes per 255-byte chunk (0: off)
    frame_rs_nsym: int
    #: forward signals heard from other nodes
    relay: bool
    #: most times a relayed signal is forwarded
    hop_limit: int
    #: signals queued for sending at most (then shed, bulk first)
    send_queue_limit: int
    #: received signals waiting for consensus and subscribers at most
    receive_backlog_limit: int


@dataclass(frozen=True, slots=True)
class QosConfig:
    """``[qos.critical]``, ``[qos.normal]``, ``[qos.bulk]``: batching and FEC per class."""

    critical: ClassConfig
    normal: ClassConfig
    bulk: ClassConfig

    def classes(self) -> dict[QoS, ClassConfig]:
        """The classes keyed as :class:`SenderConfig` takes them."""
        return {QoS.CRITICAL: self.critical, QoS.NORMAL: self.normal, QoS.BULK: self.bulk}


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """``[control]``: the control socket the CLI talks to."""

    #: socket path, or "auto" (see :func:`resolve_socket_path`)
    socket: str
    #: clients connected at once at most
    max_clients: int
    #: file mode of the socket (an int, e.g. 0o660)
    mode: int
    #: group the socket belongs to and whose members may use every op ("" or
    #: a group that does not exist: the daemon's own group)
    group: str = "cloudkernel"
    #: who may use the read-only ops: "group" (root, the daemon's user, the
    #: group's members) or "any" (any local user who can reach the socket)
    readers: str = "group"

    def socket_path(self, euid: int | None = None, environ: Mapping[str, str] | None = None) -> str:
        """The socket's path for ``euid`` and ``environ`` (this process's when None)."""
        return resolve_socket_path(
            self.socket,
            os.geteuid() if euid is None else euid,
            os.environ if environ is None else environ,
        )


@dataclass(frozen=True, slots=True)
class RealtimeConfig:
    """``[realtime]``: scheduling and memory of the daemon."""

    #: SCHED_FIFO priority 1..99; 0: normal scheduling
    priority: int
    #: CPU to pin to; -1: no pinning
    cpu: int
    #: mlockall the daemon's memory
    lock_memory: bool
    #: freeze start-up objects out of garbage collection
    freeze_gc: bool


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``[metrics]``: the Prometheus exporter."""

    #: "host:port" or "[v6]:port" of the exporter; "" for none
    listen: str
    #: topics exported with their own series at most
    max_topic_series: int

    @property
    def address(self) -> tuple[str, int] | None:
        """``listen`` as (host, port), None when the exporter is off."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """``[log]``."""

    #: least severe level logged: debug, info, warning or error
    level: str


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """``[consensus]`` and ``[consensus.reputation]``: the defaults of every topic."""

    #: the filter of topics that no ``[[topic]]`` entry overrides
    filter: FilterConfig
    #: the node's reputation table, shared by every topic
    reputation: ReputationConfig
    #: QoS class of topics that no ``[[topic]]`` entry gives one
    qos: QoS


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """One ``[[topic]]`` entry as written: a pattern and what it overrides."""

    #: fnmatch glob matched (case-sensitively) against the whole topic name
    pattern: str
    #: QoS class of the matching topics; None: ``consensus.qos``
    qos: QoS | None
    #: ``FilterConfig`` fields set by the entry, in file order
    overrides: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class TopicPolicy:
    """What one topic gets: its entry's settings merged over ``[consensus]``."""

    #: pattern of the ``[[topic]]`` entry that matched; None: the defaults
    pattern: str | None
    #: index of that entry in the file's ``[[topic]]`` array; None: the defaults
    index: int | None
    qos: QoS
    filter: FilterConfig

    @property
    def kind(self) -> str:
        """scalar, vector, category or interval."""
        return self.filter.kind


def _topic_filter(base: FilterConfig, overrides: Sequence[tuple[str, Any]]) -> FilterConfig:
    return dataclasses.replace(base, **dict(overrides)) if overrides else base


class _PolicyIndex:
    """First-match lookup of :class:`TopicPolicy`, with a bounded LRU cache."""

    __slots__ = ("_cache", "_default", "_entries", "_size")

    def __init__(
        self, consensus: ConsensusConfig, topics: Sequence[TopicConfig], size: int
    ) -> None:
        self._default = TopicPolicy(None, None, consensus.qos, consensus.filter)
        self._entries = [
            (
                re.compile(fnmatch.translate(t.pattern)),
                TopicPolicy(
                    t.pattern,
                    i,
                    consensus.qos if t.qos is None else t.qos,
                    _topic_filter(consensus.filter, t.overrides),
                ),
            )
            for i, t in enumerate(topics)
        ]
        self._cache: OrderedDict[str, TopicPolicy] = OrderedDict()
        self._size = size

    def lookup(self, topic: str) -> TopicPolicy:
        cache = self._cache
        policy = cache.get(topic)
        if policy is not None:
            cache.move_to_end(topic)
            return policy
        policy = next((p for regex, p in self._entries if regex.match(topic)), self._default)
        cache[topic] = policy
        if len(cache) > self._size:
            cache.popitem(last=False)
        return policy

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True)
class Config:
    """The daemon's whole configuration; immutable.  Made by :func:`load_config`."""

    node: NodeConfig
    mesh: MeshSettings
    membership: MembershipConfig
    qos: QosConfig
    control: ControlConfig
    realtime: RealtimeConfig
    metrics: MetricsConfig
    log: LogConfig
    consensus: ConsensusConfig
    #: the ``[[topic]]`` entries in file order
    topics: tuple[TopicConfig, ...] = ()
    #: where the settings came from: a path, "<default>" or "<string>"
    source: str = field(default="<default>", compare=False)
    _policies: _PolicyIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_policies", _PolicyIndex(self.consensus, self.topics, POLICY_CACHE_SIZE)
        )

    def policy_for(self, topic: str) -> TopicPolicy:
        """The settings of ``topic``: the first ``[[topic]]`` entry whose pattern
        matches it, merged over ``[consensus]``; ``[consensus]`` alone when none
        matches.  Remembered per topic name, for :data:`POLICY_CACHE_SIZE` names.
        """
        return self._policies.lookup(topic)

    def sender_config(self) -> SenderConfig:
        """The :class:`SenderConfig` of ``[mesh]`` and ``[qos.*]``."""
        return SenderConfig(
            max_datagram=self.mesh.max_datagram,
            encrypt=self.mesh.encrypt,
            frame_rs_nsym=self.mesh.frame_rs_nsym,
            classes=self.qos.classes(),
        )

    def receiver_config(self, node_id: int) -> ReceiverConfig:
        """A :class:`ReceiverConfig` for this swarm's packets, its other bounds at their defaults.

        :param node_id: this node's resolved id (its own looped-back packets are dropped).
        """
        return ReceiverConfig(
            max_datagram=self.mesh.max_datagram,
            frame_rs_nsym=self.mesh.frame_rs_nsym,
            node_id=node_id,
        )

    def summary(self) -> dict[str, Any]:
        """Every setting as plain data (str, int, float, bool, list, dict), for
        ``cloudkernel status`` and ``config check``.  Infinite floats are given
        as the strings "inf" and "-inf", so the result is valid JSON.
        """
        mesh = dataclasses.asdict(self.mesh)
        mesh["interfaces"] = list(self.mesh.interfaces)
        consensus = _filter_summary(self.consensus.filter)
        consensus["qos"] = self.consensus.qos.name.lower()
        consensus["reputation"] = dataclasses.asdict(self.consensus.reputation)
        topics = []
        for t in self.topics:
            entry: dict[str, Any] = {"pattern": t.pattern}
            if t.qos is not None:
                entry["qos"] = t.qos.name.lower()
            entry.update((k, _plain(v)) for k, v in t.overrides)
            topics.append(entry)
        return {
            "source": self.source,
            "node": dataclasses.asdict(self.node),
            "mesh": mesh,
            "membership": dataclasses.asdict(self.membership),
            "qos": {name: _class_summary(getattr(self.qos, name)) for name in _QOS_NAMES},
            "control": {
                "socket": self.control.socket,
                "max_clients": self.control.max_clients,
                "mode": f"{self.control.mode:04o}",
                "group": self.control.group,
                "readers": self.control.readers,
            },
            "realtime": dataclasses.asdict(self.realtime),
            "metrics": dataclasses.asdict(self.metrics),
            "log": dataclasses.asdict(self.log),
            "consensus": consensus,
            "topic": topics,
        }

    def changed(self, new: Config) -> tuple[str, ...]:
        """The settings that differ in ``new``, as sorted dotted names
        (``topic`` for any change to the ``[[topic]]`` entries)."""
        old_flat = _flatten(self.summary())
        new_flat = _flatten(new.summary())
        changed = {
            k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k) != new_flat.get(k)
        }
        changed.discard("source")
        return tuple(sorted(changed))

    def restart_required(self, new: Config) -> tuple[str, ...]:
        """The settings that differ in ``new`` and need a restart to take
        effect (those not :func:`is_live_reloadable`), as sorted dotted names.
        """
        return tuple(k for k in self.changed(new) if not is_live_reloadable(k))

    def reloaded(self, new: Config) -> Config:
        """The config a reload to ``new`` runs with: ``new``'s live settings
        (:func:`is_live_reloadable`) and this config's others, which need a
        restart (:meth:`restart_required` names those that differ).
        """
        return dataclasses.replace(
            self,
            membership=new.membership,
            qos=new.qos,
            log=new.log,
            metrics=dataclasses.replace(
                self.metrics, max_topic_series=new.metrics.max_topic_series
            ),
            consensus=dataclasses.replace(new.consensus, reputation=self.consensus.reputation),
            topics=new.topics,
            source=new.source,
        )


def is_live_reloadable(name: str) -> bool:
    """Whether the setting ``name`` (dotted, e.g. ``qos.bulk.k_max``) changes on reload."""
    parts = name.split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return not prefixes & RESTART_ONLY and bool(prefixes & LIVE_RELOADABLE)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _filter_summary(config: FilterConfig) -> dict[str, Any]:
    return {k: _plain(v) for k, v in dataclasses.asdict(config).items()}


def _class_summary(config: ClassConfig) -> dict[str, Any]:
    policy = config.policy
    return {
        "budget_ms": config.budget * 1000.0,
        "k_max": config.k_max,
        "target": policy.target,
        "m_min": policy.m_min,
        "m_max": policy.m_max,
        "fixed_m": -1 if policy.fixed_m is None else policy.fixed_m,
    }


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = prefix + key
        if isinstance(value, dict) and name != "topic":
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


@cache
def default_config_text() -> str:
    """The embedded default config file (also the template for operators)."""
    return resources.files(__package__).joinpath("default.toml").read_text(encoding="utf-8")


@cache
def _default_data() -> dict[str, Any]:
    return tomllib.loads(default_config_text())


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read the config file at ``path`` and merge it over the embedded default.

    The file needs only the settings it changes.  Relative paths in it
    (``node.key_file``, ``node.state_dir``) are taken relative to its
    directory.

    :param path: the config file; None for the embedded default alone.
    :raises ConfigError: when the file cannot be read, is larger than
        :data:`MAX_CONFIG_BYTES`, is not UTF-8 TOML, or holds a setting that is
        unknown, of the wrong type, out of range or inconsistent.  ``str()``
        of the error names the file, line and setting.
    """
    if path is None:
        text = default_config_text()
        return _build(_default_data(), _Context("<default>", text), None)
    name = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO would otherwise block the open until a writer comes.
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"cannot open: {_reason(exc)}", source=name) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError("is not a regular file", source=name)
        data = _read_at_most(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {_reason(exc)}", source=name) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"is larger than {MAX_CONFIG_BYTES} bytes", source=name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("is not UTF-8 text", source=name, line=line) from None
    return parse_config(text, name, base_dir=os.path.dirname(os.path.abspath(name)))


def parse_config(text: str, source: str = "<string>", *, base_dir: str | None = None) -> Config:
    """Parse config file text and merge it over the embedded default.

    :param text: the file's contents.
    :param source: the name errors give for the text (a path).
    :param base_dir: directory that relative paths are relative to; when None
        they are kept as written (relative to the daemon's working directory).
    :raises ConfigError: as :func:`load_config`.
    """
    if (
        len(text) > MAX_CONFIG_BYTES
        or len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES
    ):
        raise ConfigError(f"is larger than {MAX_CONFIG_BYTES} bytes", source=source)
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"TOML syntax error: {exc}", source=source, line=_toml_error_line(str(exc), text)
        ) from None
    except (ValueError, RecursionError) as exc:
        # Not a TOMLDecodeError: e.g. an integer of more digits than int() takes,
        # or arrays nested deeper than the parser recurses.
        what = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split("\n")[0]
        raise ConfigError(f"TOML syntax error: {what}", source=source) from None
    return _build(_merge(_default_data(), data), _Context(source, text), base_dir)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < limit:
        chunk = os.read(fd, min(limit - got, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


_TOML_AT = re.compile(r"\(at line (\d+), column \d+\)")


def _toml_error_line(message: str, text: str) -> int | None:
    match = _TOML_AT.search(message)
    if match:
        return int(match.group(1))
    if "end of document" in message:
        return text.count("\n") + 1
    return None


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``: tables merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        out[key] = (
            _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


# ---------------------------------------------------------------------------
# Finding lines
# ---------------------------------------------------------------------------

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*"
_ARRAY_HEADER = re.compile(rf"[ \t]*\[\[[ \t]*({_DOTTED})[ \t]*\]\]")
_TABLE_HEADER = re.compile(rf"[ \t]*\[[ \t]*({_DOTTED})[ \t]*\]")
_KEY_LINE = re.compile(rf"[ \t]*({_DOTTED})[ \t]*=")
_PART = re.compile(_KEY_PART)


def _key_parts(dotted: str) -> list[str]:
    parts = []
    for part in _PART.findall(dotted):
        if part[:1] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return parts


class _Locator:
    """Lines of the tables and keys in TOML text, found without a full parser.

    Knows table headers (``[a.b]``), array-of-tables headers (``[[a]]``,
    counting the entries) and ``key =`` lines, dotted keys included, and skips
    the inside of multi-line strings.  A key inside an inline table is not
    found; :meth:`line` then falls back to its table's line.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        arrays: dict[Path, int] = {}
        table: Path = ()
        in_string: str | None = None
        for number, line in enumerate(text.split("\n"), 1):
            if in_string is not None:
                if line.count(in_string) % 2:
                    in_string = None
                continue
            rest = line
            if match := _ARRAY_HEADER.match(line):
                parts = _key_parts(match.group(1))
                parent = self._resolve(parts[:-1], arrays)
                key = (*parent, parts[-1])
                count = arrays.get(key, 0)
                arrays[key] = count + 1
                table = (*key, count)
                self._lines.setdefault(table, number)
                rest = line[match.end() :]
            elif match := _TABLE_HEADER.match(line):
                table = self._resolve(_key_parts(match.group(1)), arrays)
                self._lines.setdefault(table, number)
                rest = line[match.end() :]
            elif match := _KEY_LINE.match(line):
                self._lines.setdefault((*table, *_key_parts(match.group(1))), number)
                rest = line[match.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2:
                    in_string = quote
                    break

    @staticmethod
    def _resolve(parts: Sequence[str], arrays: Mapping[Path, int]) -> Path:
        out: list[str | int] = []
        for part in parts:
            out.append(part)
            count = arrays.get(tuple(out))
            if count:
                out.append(count - 1)
        return tuple(out)

    def has(self, path: Path) -> bool:
        return path in self._lines

    def line(self, path: Path) -> int | None:
        """The line of ``path``, else of the nearest enclosing table found; None if none."""
        for end in range(len(path), 0, -1):
            number = self._lines.get(path[:end])
            if number is not None:
                return number
        return None


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else _show(part)
            out += f".{shown}" if out else shown
    return out


def _show(value: object) -> str:
    """A value as a message shows it: short, one line, in TOML's words."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value[:60] + "...") if len(value) > 60 else repr(value)
        return text
    if isinstance(value, int):
        digits = (
            str(value) if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
        )
        return digits
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


class _Context:
    """The file being checked: its name and where its keys are."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.locator = _Locator(text)

    def error(self, path: Path, message: str) -> ConfigError:
        return ConfigError(
            message,
            source=self.source,
            line=self.locator.line(path),
            field=_dotted(path) or None,
        )


# ---------------------------------------------------------------------------
# Checking values
# ---------------------------------------------------------------------------


class _Invalid(Exception):
    """A value is wrong; the message says how, without naming the setting."""


Check = Callable[[Any], Any]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int(lo: int, hi: int) -> Check:
    def check(value: Any) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise _Invalid(f"must be an integer in {lo}..{hi}, got {_show(value)}")
        return value

    return check


def _any_int(value: Any) -> int:
    if type(value) is not int:
        raise _Invalid(f"must be an integer, got {_show(value)}")
    return value


def _float(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    rule = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def check(value: Any) -> float:
        ok = _is_number(value) and (lo < value if lo_open else lo <= value)
        ok = ok and (value < hi if hi_open else value <= hi)
        if not ok:
            raise _Invalid(f"must be a number in {rule}, got {_show(value)}")
        return float(value)

    return check


def _any_float(*, infinite: bool = False) -> Check:
    def check(value: Any) -> float:
        if not _is_number(value) or math.isnan(value):
            raise _Invalid(f"must be a number, got {_show(value)}")
        if isinstance(value, int):
            if abs(value) > 10**300:
                raise _Invalid(f"must be a number within +-1e300, got {_show(value)}")
            value = float(value)
        if math.isinf(value) and not infinite:
            raise _Invalid(f"must be a finite number, got {_show(value)}")
        return float(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_show(value)}")
    return value


def _choice(options: Sequence[str]) -> Check:
    listed = ", ".join(f'"{o}"' for o in options)

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise _Invalid(f"must be one of {listed}, got {_show(value)}")
        return value

    return check


def _qos(value: Any) -> QoS:
    return QoS[_choice(_QOS_NAMES)(value).upper()]


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"must be a non-empty path, got {_show(value)}")
    if "\0" in value or len(value) > _MAX_PATH:
        raise _Invalid(f"must be a path without NUL of at most {_MAX_PATH} characters")
    return value


def _node_id(value: Any) -> int | Literal["auto"]:
    if value == "auto" and isinstance(value, str):
        return "auto"
    if type(value) is not int or not 1 <= value <= _MAX_U32:
        raise _Invalid(f'must be "auto" or an integer in 1..{_MAX_U32}, got {_show(value)}')
    return value


def _ipv4_group(value: Any) -> str:
    if value == "" and isinstance(value, str):
        return ""  # IPv6 only
    try:
        addr = ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ValueError:
        addr = None
    if addr is None or not addr.is_multicast:
        raise _Invalid(
            f'must be an IPv4 multicast address (224.0.0.0/4), or "", got {_show(value)}'
        )
    return str(addr)


def _ipv6_group(value: Any) -> str:
    if value == "" and isinstance(value, str):
        return ""
    try:
        addr = ipaddress.IPv6Address(value) if isinstance(value, str) else None
    except ValueError:
        addr = None
    if addr is None or not addr.is_multicast or addr.scope_id:
        raise _Invalid(
            f'must be an IPv6 multicast address (ff00::/8) without a scope, or "", '
            f"got {_show(value)}"
        )
    return str(addr)


_IFNAME = re.compile(r"[^\s/:\0]{1,15}")


def _interfaces(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= _MAX_INTERFACES:
        raise _Invalid(
            f'must be an array of 1..{_MAX_INTERFACES} interface names or ["auto"], '
            f"got {_show(value)}"
        )
    names = []
    for name in value:
        if (
            not isinstance(name, str)
            or not _IFNAME.fullmatch(name)
            or len(name.encode("utf-8", "surrogatepass")) > 15
            or name in (".", "..")
        ):
            raise _Invalid(f"must hold interface names of 1..15 bytes, got {_show(name)}")
        if name in names:
            raise _Invalid(f"names interface {_show(name)} twice")
        names.append(name)
    if "auto" in names and len(names) > 1:
        raise _Invalid('"auto" must be the only entry when given')
    return tuple(names)


def _socket_setting(value: Any) -> str:
    if value == "auto" and isinstance(value, str):
        return "auto"
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or "\0" in value
        or len(value.encode("utf-8", "surrogatepass")) > _MAX_SOCKET_PATH
    ):
        raise _Invalid(
            f'must be "auto" or an absolute path of at most {_MAX_SOCKET_PATH} bytes, '
            f"got {_show(value)}"
        )
    return value


_MODE = re.compile(r"(?:0o|0)?([0-7]{3})")


def _mode(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        raise _Invalid(
            f'must be a string of octal digits such as "0660", got the integer {value} '
            "(TOML reads 660 as decimal)"
        )
    match = _MODE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _Invalid(f'must be an octal file mode such as "0660", got {_show(value)}')
    mode = int(match.group(1), 8)
    if mode & 0o600 != 0o600:
        raise _Invalid(f"must give the owner read and write (0600), got {_show(value)}")
    return mode


_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")


def _group_name(value: Any) -> str:
    if value == "" and isinstance(value, str):
        return ""
    if not isinstance(value, str) or not _GROUP_NAME.fullmatch(value):
        raise _Invalid(f'must be a group name such as "cloudkernel", or "", got {_show(value)}')
    return value


_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _listen(value: Any) -> str:
    if value == "" and isinstance(value, str):
        return ""
    bad = _Invalid(f'must be "host:port", "[v6 address]:port" or "", got {_show(value)}')
    if not isinstance(value, str):
        raise bad
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise bad
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise bad from None
    elif not _HOSTNAME.fullmatch(host):
        raise bad
    return value


def _check_table(ctx: _Context, value: Any, path: Path, what: str = "a table") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ctx.error(path, f"must be {what}, got {_show(value)}")
    return value


def _suggest(key: str, known: Sequence[str]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {_show(match[0])}?" if match else ""


def _read(
    ctx: _Context,
    data: Mapping[str, Any],
    path: Path,
    spec: Mapping[str, Check],
    *,
    required: bool = True,
    tables: Sequence[str] = (),
) -> dict[str, Any]:
    """Check the keys of the table ``data`` at ``path`` against ``spec``.

    Unknown keys first (the first in file order), then each value in ``spec``
    order.  ``tables`` are sub-tables that the caller reads.
    """
    known = [*spec, *tables]
    for key in data:
        if key not in spec and key not in tables:
            where = f"[{_dotted(path)}]"
            raise ctx.error(
                (*path, key), f"unknown key {_show(key)} in {where}{_suggest(key, known)}"
            )
    out: dict[str, Any] = {}
    for key, check in spec.items():
        if key not in data:
            if required:
                raise ctx.error((*path, key), "is missing")
            continue
        try:
            out[key] = check(data[key])
        except _Invalid as exc:
            raise ctx.error((*path, key), str(exc)) from None
    return out


_MENTION = re.compile(r"[a-z][a-z0-9_]*")


def _blame(
    ctx: _Context, path: Path, message: str, keys: Sequence[str], aliases: Mapping[str, str] = {}
) -> tuple[Path, str]:
    """Which setting an error of a settings object's own check is about.

    The keys the message mentions, in order; the first one the file sets wins,
    else the first mentioned, else the table itself.  A message "<key> must
    ..." about the chosen key loses its first word (the field names it).
    """
    mentioned: list[str] = []
    for word in _MENTION.findall(message):
        key = aliases.get(word, word)
        if key in keys and key not in mentioned:
            mentioned.append(key)
    if not mentioned:
        return path, message
    chosen = next((k for k in mentioned if ctx.locator.has((*path, k))), mentioned[0])
    first = _MENTION.match(message)
    if first and first.group() == chosen and message[first.end() :].startswith(" must "):
        message = message[first.end() + 1 :]
    return (*path, chosen), message


def _check_pattern(pattern: Any) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise _Invalid(f'must be a non-empty glob such as "robot/*/pose", got {_show(pattern)}')
    if len(pattern) > _MAX_PATTERN or not pattern.isprintable():
        raise _Invalid(f"must be at most {_MAX_PATTERN} printable characters")
    # fnmatch takes an unclosed "[" as a literal one; here it is a mistake.
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                raise _Invalid(
                    f"has an unclosed '[' at position {i + 1} (write [[] for a literal '['), "
                    f"got {_show(pattern)}"
                )
            i = j
        i += 1
    try:
        re.compile(fnmatch.translate(pattern))
    except re.error as exc:  # pragma: no cover - fnmatch escapes what it does not translate
        raise _Invalid(f"is not a valid glob ({exc}), got {_show(pattern)}") from None
    return pattern


# ---------------------------------------------------------------------------
# Building the tree
# ---------------------------------------------------------------------------

_NODE: Final[Mapping[str, Check]] = {
    "id": _node_id,
    "key_file": _path,
    "state_dir": _path,
    "next_key_file": lambda value: "" if value == "" else _path(value),
}

_MESH: Final[Mapping[str, Check]] = {
    "group": _ipv4_group,
    "group6": _ipv6_group,
    "port": _int(1, 65535),
    "interfaces": _interfaces,
    "ttl": _int(1, 255),
    "loopback": _bool,
    "max_datagram": _int(256, 65507),
    "encrypt": _bool,
    "frame_rs_nsym": _int(0, 128),
    "relay": _bool,
    "hop_limit": _int(1, 15),
    "send_queue_limit": _int(16, 1 << 20),
    "receive_backlog_limit": _int(16, 1 << 20),
}

_MEMBERSHIP: Final[Mapping[str, Check]] = {
    "heartbeat_interval": _float(0.01, 60.0),
    "phi_threshold": _float(0.5, 100.0),
    "acceptable_pause": _float(0.0, 3600.0, lo_open=True),
    "min_std_deviation": _float(0.001, 60.0),
    "max_samples": _int(2, 100_000),
    "dead_after": _float(0.0, 86400.0, lo_open=True),
    "forget_after": _float(0.0, 30 * 86400.0, lo_open=True),
    "max_peers": _int(1, 65_536),
}

_QOS_CLASS: Final[Mapping[str, Check]] = {
    "budget_ms": _float(0.0, 10_000.0, lo_open=True),
    "k_max": _int(1, 128),
    "target": _float(0.0, 1.0, lo_open=True, hi_open=True),
    "m_min": _int(0, 254),
    "m_max": _int(0, 254),
    "fixed_m": _int(-1, 254),
}

_CONTROL: Final[Mapping[str, Check]] = {
    "socket": _socket_setting,
    "max_clients": _int(1, 4096),
    "mode": _mode,
    "group": _group_name,
    "readers": _choice(("group", "any")),
}

_REALTIME: Final[Mapping[str, Check]] = {
    "priority": _int(0, 99),
    "cpu": _int(-1, 4095),
    "lock_memory": _bool,
    "freeze_gc": _bool,
}

_METRICS: Final[Mapping[str, Check]] = {
    "listen": _listen,
    "max_topic_series": _int(0, 100_000),
}

_LOG: Final[Mapping[str, Check]] = {"level": _choice(_LOG_LEVELS)}

# Types only: FilterConfig and ReputationConfig check their own ranges.
_FILTER: Final[Mapping[str, Check]] = {
    name: (
        _choice(tuple(KINDS))
        if name == "kind"
        else _choice(("byzantine", "consistent"))
        if name == "fault_model"
        else _any_int
        if name in ("dims", "min_sources", "max_sources")
        else _any_float(infinite=name in ("lower", "upper"))
    )
    for name in _FILTER_FIELDS
}
_REPUTATION: Final[Mapping[str, Check]] = {
    name: _any_int if name in ("probation_rounds", "max_sources") else _any_float()
    for name in _REPUTATION_FIELDS
}
# A topic's kind (and vector length) is that of its first value unless a
# [[topic]] entry sets it: [consensus] has no kind of its own.
_CONSENSUS: Final[Mapping[str, Check]] = {
    **{name: check for name, check in _FILTER.items() if name not in ("kind", "dims")},
    "qos": _qos,
}
_TOPIC: Final[Mapping[str, Check]] = {"pattern": _check_pattern, "qos": _qos, **_FILTER}

_SECTIONS: Final = (
    "node",
    "mesh",
    "membership",
    "qos",
    "control",
    "realtime",
    "metrics",
    "log",
    "consensus",
    "topic",
)


def _build(data: Mapping[str, Any], ctx: _Context, base_dir: str | None) -> Config:
    for key, value in data.items():
        if key in _SECTIONS:
            continue
        if not isinstance(value, dict):
            # Most likely a key written above its section's header.
            owner = next((name for name, spec in _SPECS.items() if key in spec), None)
            hint = f"; did you mean {key} in [{owner}]?" if owner else ""
            raise ctx.error((key,), f"unknown key {_show(key)} outside any section{hint}")
        match = difflib.get_close_matches(key, _SECTIONS, n=1, cutoff=0.6)
        hint = f"; did you mean [{match[0]}]?" if match else ""
        raise ctx.error((key,), f"unknown section [{_dotted((key,))}]{hint}")

    def section(name: str, spec: Mapping[str, Check], **kw: Any) -> dict[str, Any]:
        return _read(ctx, _check_table(ctx, data[name], (name,)), (name,), spec, **kw)

    node = section("node", _NODE)
    for key in ("key_file", "state_dir", "next_key_file"):
        if base_dir is not None and node[key]:
            node[key] = os.path.normpath(os.path.join(base_dir, node[key]))
    mesh = MeshSettings(**section("mesh", _MESH))
    if not mesh.group and not mesh.group6:
        raise ctx.error(("mesh", "group"), 'group and group6 are both ""; set at least one')
    membership = _membership(ctx, section("membership", _MEMBERSHIP))
    qos = _qos_section(ctx, data["qos"])
    try:
        SenderConfig(mesh.max_datagram, mesh.encrypt, mesh.frame_rs_nsym, qos.classes())
    except ConfigError as exc:
        path, message = _blame(ctx, ("mesh",), exc.message, ("frame_rs_nsym", "max_datagram"))
        if len(path) == 1:
            path = ("mesh", "max_datagram")
        raise ctx.error(path, message) from None
    consensus = _consensus(ctx, data["consensus"])
    topics = _topics(ctx, data.get("topic", []), consensus)
    return Config(
        node=NodeConfig(**node),
        mesh=mesh,
        membership=membership,
        qos=qos,
        control=ControlConfig(**section("control", _CONTROL)),
        realtime=RealtimeConfig(**section("realtime", _REALTIME)),
        metrics=MetricsConfig(**section("metrics", _METRICS)),
        log=LogConfig(**section("log", _LOG)),
        consensus=consensus,
        topics=topics,
        source=ctx.source,
    )


_SPECS: Final[Mapping[str, Mapping[str, Check]]] = {
    "node": _NODE,
    "mesh": _MESH,
    "membership": _MEMBERSHIP,
    "control": _CONTROL,
    "realtime": _REALTIME,
    "metrics": _METRICS,
    "log": _LOG,
    "consensus": _CONSENSUS,
}


def _membership(ctx: _Context, values: dict[str, Any]) -> MembershipConfig:
    try:
        return MembershipConfig(**values)
    except ConfigError as exc:
        where, message = _blame(ctx, ("membership",), exc.message, tuple(_MEMBERSHIP))
        raise ctx.error(where, message) from None


def _qos_section(ctx: _Context, value: Any) -> QosConfig:
    table = _read(ctx, _check_table(ctx, value, ("qos",)), ("qos",), {}, tables=_QOS_NAMES)
    del table
    classes: dict[str, ClassConfig] = {}
    for name in _QOS_NAMES:
        path: Path = ("qos", name)
        if name not in value:
            raise ctx.error(path, "is missing")
        v = _read(ctx, _check_table(ctx, value[name], path), path, _QOS_CLASS)
        try:
            policy = RedundancyPolicy(
                target=v["target"],
                m_min=v["m_min"],
                m_max=v["m_max"],
                fixed_m=None if v["fixed_m"] < 0 else v["fixed_m"],
            )
            classes[name] = ClassConfig(v["budget_ms"] / 1000.0, v["k_max"], policy)
        except ConfigError as exc:
            where, message = _blame(
                ctx, path, exc.message, tuple(_QOS_CLASS), {"budget": "budget_ms"}
            )
            raise ctx.error(where, message) from None
    return QosConfig(**classes)


def _consensus(ctx: _Context, value: Any) -> ConsensusConfig:
    path: Path = ("consensus",)
    table = _check_table(ctx, value, path)
    v = _read(ctx, table, path, _CONSENSUS, tables=("reputation",))
    qos = v.pop("qos")
    try:
        filter_config = FilterConfig(**v)
    except ValueError as exc:
        where, message = _blame(ctx, path, str(exc), _FILTER_FIELDS)
        raise ctx.error(where, message) from None
    rpath: Path = (*path, "reputation")
    if "reputation" not in table:
        raise ctx.error(rpath, "is missing")
    r = _read(ctx, _check_table(ctx, table["reputation"], rpath), rpath, _REPUTATION)
    try:
        reputation = ReputationConfig(**r)
    except ValueError as exc:
        where, message = _blame(ctx, rpath, str(exc), _REPUTATION_FIELDS)
        raise ctx.error(where, message) from None
    return ConsensusConfig(filter_config, reputation, qos)


def _topics(ctx: _Context, value: Any, consensus: ConsensusConfig) -> tuple[TopicConfig, ...]:
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise ctx.error(("topic",), "must be an array of tables: write each entry as [[topic]]")
    if len(value) > MAX_TOPIC_ENTRIES:
        raise ctx.error(
            ("topic",), f"must have at most {MAX_TOPIC_ENTRIES} entries, got {len(value)}"
        )
    topics = []
    for i, entry in enumerate(value):
        path: Path = ("topic", i)
        if "pattern" not in entry:
            raise ctx.error(path, "has no pattern; every [[topic]] needs one")
        v = _read(ctx, entry, path, _TOPIC, required=False)
        pattern = v.pop("pattern")
        qos = v.pop("qos", None)
        overrides = tuple(v.items())
        try:
            _topic_filter(consensus.filter, overrides)
        except ValueError as exc:
            where, message = _blame(ctx, path, str(exc), _FILTER_FIELDS)
            if len(where) == 3 and where[2] not in entry:
                message = f"{where[2]} {message} ({where[2]} is set in [consensus])"
                where = path
            raise ctx.error(where, message) from None
        topics.append(TopicConfig(pattern, qos, overrides))
    return tuple(topics)
