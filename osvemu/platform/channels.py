"""OSV's shared channels with epoch consistency.

Under lock-step epochs (osvemu.parallel) each member kernel of a channel
works on its own copy of the channel's memory; at every epoch boundary the
bytes each member changed since the last boundary are merged into the
channel -- the members in kernel order, so that where two changed the same
byte in one epoch the later kernel's value stands -- and every copy is
refreshed from it.  What a kernel reads in a channel is therefore the same
whichever host process runs which kernel, and however fast they run.  Within
an epoch a kernel sees its own writes at once and the other members' at the
next boundary, as a release-consistent memory would show them.

The channel itself is the plan's bank (shared between processes, so that
the parent of a partitioned run merges into memory every worker sees).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osvemu.cpu.memory import Mapping, MemoryBank, MemoryView

#: Pages are compared whole first; only a page that differs is compared byte by byte.
_PAGE = 4096
#: One member's changes to one channel: (channel index, kernel index, [(offset, bytes), ...]).
ChannelChanges = tuple[int, int, list[tuple[int, bytes]]]


@dataclass
class _Channel:
    mapping: Mapping  # the plan's: the channel's own memory
    copies: dict[int, MemoryBank] = field(default_factory=dict)  # kernel index -> its copy

    def memory(self) -> memoryview:
        start = self.mapping.offset
        return self.mapping.bank.view[start:start + self.mapping.size]


class EpochChannels:
    """Each kernel's copies of the channels it is a member of."""

    def __init__(self, shared_ranges: dict[int, tuple[tuple[int, int], ...]], views: dict[int, MemoryView]) -> None:
        self._channels: list[_Channel] = []
        by_range: dict[tuple[int, int, int], _Channel] = {}
        self.views: dict[int, MemoryView] = {}
        for kernel, view in views.items():
            shared = set(shared_ranges.get(kernel, ()))
            mappings = []
            for mapping in view.mappings:
                if (mapping.gpa, mapping.size) not in shared:
                    mappings.append(mapping)
                    continue
                key = (id(mapping.bank), mapping.offset, mapping.size)
                channel = by_range.get(key)
                if channel is None:
                    channel = by_range[key] = _Channel(mapping)
                    self._channels.append(channel)
                copy = MemoryBank(mapping.size, f"{mapping.bank.name} (kernel {kernel}'s copy)")
                copy.view[:] = channel.memory()
                channel.copies[kernel] = copy
                mappings.append(Mapping(mapping.gpa, mapping.size, copy, 0))
            self.views[kernel] = MemoryView(mappings)

    def changes(self, kernels: frozenset[int] | set[int]) -> list[ChannelChanges]:
        """What each of ``kernels`` changed in its copies since they were last refreshed."""
        found = []
        for index, channel in enumerate(self._channels):
            memory = channel.memory()
            for kernel in sorted(kernels & channel.copies.keys()):
                runs = _changed_runs(memory, channel.copies[kernel].view)
                if runs:
                    found.append((index, kernel, runs))
        return found

    def apply(self, changes: list[ChannelChanges]) -> None:
        """Merge changes into the channels, kernel by kernel in kernel order."""
        for index, _kernel, runs in sorted(changes, key=lambda change: (change[0], change[1])):
            memory = self._channels[index].memory()
            for offset, data in runs:
                memory[offset:offset + len(data)] = data

    def refresh(self, kernels: frozenset[int] | set[int]) -> None:
        """The copies of ``kernels`` become the channels' contents again."""
        for channel in self._channels:
            memory = channel.memory()
            for kernel in kernels & channel.copies.keys():
                channel.copies[kernel].view[:] = memory

    def synchronize(self, kernels: frozenset[int] | set[int]) -> None:
        """An epoch boundary in one process: merge, then refresh every copy."""
        self.apply(self.changes(kernels))
        self.refresh(kernels)


def _changed_runs(old: memoryview, new: memoryview) -> list[tuple[int, bytes]]:
    """The byte runs where ``new`` differs from ``old``, as (offset, new bytes)."""
    runs: list[tuple[int, bytes]] = []
    for page in range(0, len(old), _PAGE):
        before, after = old[page:page + _PAGE], new[page:page + _PAGE]
        if before == after:
            continue
        before, after = bytes(before), bytes(after)
        start = None
        for offset, (a, b) in enumerate(zip(before, after)):
            if a != b:
                if start is None:
                    start = offset
            elif start is not None:
                runs.append((page + start, after[start:offset]))
                start = None
        if start is not None:
            runs.append((page + start, after[start:]))
    return runs


__all__ = ["ChannelChanges", "EpochChannels"]
