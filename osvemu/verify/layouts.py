"""The partition layouts ``osvemu verify`` proves the properties on.

The regular ones are the machine's defaults (``osvemu boot`` with and
without ``--kernels 8``); the irregular ones are TOML layouts shipped
beside this module (``layouts/*.toml``: uneven sizes, interleaved cores,
holes in the APIC ID space, offline cores, boot CPUs that are not the
lowest ID, several channels, the 255-core xAPIC maximum).  A user's own
layout is one more: ``osvemu verify --config FILE``.  The proofs are about
the layout, not the kernels' images, so images are not loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from osvemu.errors import ConfigError
from osvemu.osv.config import OsvConfig, default_config, load_config
from osvemu.platform import layout
from osvemu.platform.topology import Topology

LAYOUT_DIRECTORY = Path(__file__).with_name("layouts")
#: The paper's machine: 4 sockets x 8 cores, 2 GiB.
PAPER_MACHINE = Topology(4, 8, 2 * layout.GiB)


@dataclass(frozen=True)
class NamedLayout:
    name: str
    config: OsvConfig
    #: Every APIC ID sends in the proof, or only representatives (each
    #: partition's first and last core, and one offline core) on the largest.
    all_senders: bool = True

    def senders(self) -> list[int]:
        if self.all_senders:
            return [cpu.apic_id for cpu in self.config.topology.cpus]
        chosen = {apic for plan in self.config.kernels for apic in (min(plan.apic_ids), max(plan.apic_ids))}
        chosen.update(self.config.offline_apic_ids[:1])
        return sorted(chosen)


def without_images(config: OsvConfig) -> OsvConfig:
    """The layout alone: the kernels' images and initrds are not the proof's business."""
    kernels = tuple(dataclasses.replace(plan, image="", initrd="") for plan in config.kernels)
    return dataclasses.replace(config, kernels=kernels)


def from_file(path: str | Path, name: str | None = None, all_senders: bool = True) -> NamedLayout:
    """A layout file; kernels that name no image are given the file itself,
    which is readable, and the images are dropped."""
    path = Path(path)
    config = load_config(path, default_image=str(path))
    return NamedLayout(name or path.stem, without_images(config), all_senders)


def regular(name: str) -> NamedLayout:
    """``4x8``: one kernel per socket; ``8x4``: eight kernels of four cores."""
    kernels = {"4x8": 4, "8x4": 8}.get(name)
    if kernels is None:
        raise ConfigError(f"no regular layout {name!r} (4x8, 8x4)")
    return NamedLayout(name, default_config(PAPER_MACHINE, "", kernels=kernels))


#: What ``osvemu verify`` checks by default: the paper's two regular layouts
#: and three irregular ones.
DEFAULT_LAYOUTS = ("4x8", "8x4", "uneven", "interleaved", "sparse")
#: The 255-core maximum, with representative senders.
MAX_LAYOUTS = ("max255",)
KNOWN_LAYOUTS = DEFAULT_LAYOUTS + MAX_LAYOUTS


def named(name: str) -> NamedLayout:
    if name in ("4x8", "8x4"):
        return regular(name)
    if name in KNOWN_LAYOUTS:
        return from_file(LAYOUT_DIRECTORY / f"{name}.toml", name, all_senders=name not in MAX_LAYOUTS)
    raise ConfigError(f"no layout {name!r} (known: {', '.join(KNOWN_LAYOUTS)}; or --config FILE)")


__all__ = ["DEFAULT_LAYOUTS", "KNOWN_LAYOUTS", "MAX_LAYOUTS", "NamedLayout", "from_file", "named", "regular",
           "without_images"]
